/* writer.c - who wrote a model file (see writer.h). */
#include "writer.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "safetensors.h"

vt_writer vt_writer_of(const vt_tensorset *set)
{
    vt_writer w = {.job = -1};
    const char *v = vt_tensorset_meta(set, "job_id"), *st = vt_tensorset_meta(set, "job_store");
    char *end;
    long long id = v ? strtoll(v, &end, 10) : -1;
    if (v && end != v && *end == '\0' && id >= 0)
        w.job = (int64_t)id;
    if (st && strlen(st) < sizeof w.store)
        memcpy(w.store, st, strlen(st) + 1);
    return w;
}

int vt_writer_is(const vt_writer *w, int64_t job, const char *store)
{
    return w->job == job && (!w->store[0] || strcmp(w->store, store ? store : "") == 0);
}

void vt_writer_name(const vt_writer *w, const char *store, char *buf, size_t len)
{
    if (w->job == 0)
        snprintf(buf, len, "vggtuned run");
    else if (w->store[0] && store && strcmp(w->store, store) != 0)
        snprintf(buf, len, "job %lld of another job store", (long long)w->job);
    else
        snprintf(buf, len, "job %lld", (long long)w->job);
}

/* Whether dir/classmap.json names w as its writer (or names none): 0 when
 * it is absent or names another.  One that is there but cannot be read or
 * parsed counts as naming w: such a model is not taken for replaceable. */
static int vt__classmap_names(const char *dir, const vt_writer *w)
{
    char path[PATH_MAX];
    uint8_t *text = NULL;
    size_t len = 0;
    cJSON *o;
    int yes, rc;
    if (vt_path(path, sizeof path, "%s/classmap.json", dir) < 0)
        return 1;
    if ((rc = vt_read_file(path, VT_CLASSMAP_MAX, &text, &len)) < 0)
        return rc != VT_ENOTFOUND;
    o = cJSON_ParseWithLength((const char *)text, len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "job_id");
    const char *store = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "job_store"));
    yes = !cJSON_IsObject(o) || !id ||
          (cJSON_IsNumber(id) && id->valuedouble == (double)w->job &&
           strcmp(store ? store : "", w->store) == 0);
    cJSON_Delete(o);
    free(text);
    return yes;
}

int vt_output_finished_model(const char *dir, vt_writer *w)
{
    char path[PATH_MAX];
    vt_tensorset *meta = NULL;
    int rc;
    if ((rc = vt_path(path, sizeof path, "%s/model.safetensors", dir)) < 0)
        return rc;
    rc = vt_safetensors_read_meta(&meta, path);
    if (rc == VT_ENOTFOUND || rc == VT_EFORMAT) /* none there, or not a model */
        return 0;
    if (rc < 0)
        return vt_error_wrap(rc, "%s: whose model is there", dir);
    *w = vt_writer_of(meta);
    vt_tensorset_free(meta);
    return w->job >= 0 && vt__classmap_names(dir, w);
}

int vt_output_protected_model(const char *dir, vt_writer *w, int *aside)
{
    char path[PATH_MAX];
    int rc = vt_output_finished_model(dir, w);
    if (aside)
        *aside = 0;
    if (rc != 0 || vt_path(path, sizeof path, "%s/" VT_OUTPUT_ASIDE, dir) < 0)
        return rc;
    if ((rc = vt_output_finished_model(path, w)) == 1 && aside)
        *aside = 1;
    return rc;
}

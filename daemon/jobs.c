/* jobs.c - the loop thread's job table and its JSON (see jobs.h). */
#include "jobs.h"

#include <limits.h>

#include "../common/error.h"
#include "../common/fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *vt_job_state_name(vt_job_state s)
{
    static const char *names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    return s <= VT_JOB_CANCELLED ? names[s] : "unknown";
}

vt_job *vt_job_new(int64_t id, uid_t uid, gid_t gid, const char *user, const vt_jobspec *spec)
{
    vt_job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->id = id;
    j->uid = uid;
    j->gid = gid;
    snprintf(j->user, sizeof j->user, "%s", user);
    if (vt_jobspec_copy(&j->spec, spec) < 0 || !(j->spec_json = vt_jobspec_to_json(spec)) ||
        !(j->metrics = cJSON_CreateArray())) {
        vt_job_free(j);
        return NULL;
    }
    return j;
}

void vt_job_free(vt_job *j)
{
    if (!j)
        return;
    vt_jobspec_free(&j->spec);
    free(j->spec_json);
    free(j->error);
    free(j->reason);
    free(j->trunk);
    cJSON_Delete(j->metrics);
    cJSON_Delete(j->unsaved_events);
    free(j);
}

void vt_job_set_text(char **field, const char *text)
{
    free(*field);
    *field = text ? strdup(text) : NULL;
}

void vt_jobs_add(vt_jobs *js, vt_job *j)
{
    j->next = NULL;
    if (js->tail)
        js->tail->next = j;
    else
        js->head = j;
    js->tail = j;
}

vt_job *vt_jobs_find(const vt_jobs *js, int64_t id)
{
    for (vt_job *j = js->head; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

int vt_jobs_init_model(const vt_jobs *js, vt_jobspec *s)
{
    const vt_job *src = vt_jobs_find(js, s->init_job);
    char path[PATH_MAX], *dup;
    if (!src)
        return vt_error_set(VT_ENOTFOUND, "init_job: no job %lld", (long long)s->init_job);
    if (vt_path(path, sizeof path, "%s/model.safetensors", src->spec.output) < 0)
        return VT_EINVAL;
    if (!(dup = strdup(path)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    free(s->init);
    s->init = dup;
    return 0;
}

/* Whether two absolute paths name the same directory as written (trailing
 * slashes aside). */
static int vt__same_dir(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb > 1 && b[lb - 1] == '/')
        lb--;
    return la == lb && memcmp(a, b, la) == 0;
}

vt_job *vt_jobs_output_job(const vt_jobs *js, const char *dir, int state)
{
    vt_job *found = NULL;
    for (vt_job *x = js->head; x; x = x->next)
        if ((int)x->state == state && vt__same_dir(x->spec.output, dir))
            found = x; /* in id order: the newest wins */
    return found;
}

void vt_jobs_clear(vt_jobs *js)
{
    vt_job *j = js->head, *next;
    for (; j; j = next) {
        next = j->next;
        vt_job_free(j);
    }
    js->head = js->tail = NULL;
}

int vt_jobs_queue_position(const vt_jobs *js, const vt_job *j)
{
    int pos = 0;
    if (j->state != VT_JOB_QUEUED)
        return 0;
    for (vt_job *x = js->head; x; x = x->next) {
        if (x->state == VT_JOB_QUEUED)
            pos++;
        if (x == j)
            return pos;
    }
    return 0;
}

int vt_jobs_count(const vt_jobs *js, uid_t uid, vt_job_state state)
{
    int n = 0;
    for (vt_job *x = js->head; x; x = x->next)
        n += x->uid == uid && x->state == state;
    return n;
}

static cJSON *vt__time(double t)
{
    char buf[32];
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&s, &tm))
        return cJSON_CreateNull();
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return cJSON_CreateString(buf);
}

cJSON *vt_progress_json(const vt_progress *p, const char *phase)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "epoch", p->epoch);
    cJSON_AddNumberToObject(o, "epochs", p->epochs);
    cJSON_AddNumberToObject(o, "step", p->step);
    cJSON_AddNumberToObject(o, "steps", p->steps);
    if (strcmp(phase, "preparing") != 0) { /* (nothing measured yet) */
        cJSON_AddNumberToObject(o, "loss", p->loss);
        cJSON_AddNumberToObject(o, "accuracy", p->accuracy);
        cJSON_AddNumberToObject(o, "images_per_s", p->images_per_s);
        cJSON_AddNumberToObject(o, "eta_s", p->eta_s);
    }
    cJSON_AddStringToObject(o, "phase", phase);
    return o;
}

cJSON *vt_job_json(const vt_jobs *js, const vt_job *j, vt_job_view view)
{
    cJSON *o = cJSON_CreateObject();
    int pos = vt_jobs_queue_position(js, j);
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)j->id);
    cJSON_AddStringToObject(o, "user", j->user);
    cJSON_AddStringToObject(o, "state", vt_job_state_name(j->state));
    if (pos)
        cJSON_AddNumberToObject(o, "queue_position", pos);
    if (view == VT_JOB_VIEW_FOREIGN)
        return o;
    cJSON_AddNumberToObject(o, "uid", j->uid);
    cJSON_AddStringToObject(o, "name", j->spec.name);
    cJSON_AddStringToObject(o, "mode", vt_jobspec_mode_name(j->spec.trainable_blocks));
    cJSON_AddNumberToObject(o, "trainable_blocks", j->spec.trainable_blocks);
    cJSON_AddNumberToObject(o, "epochs", j->spec.epochs);
    cJSON_AddNumberToObject(o, "epochs_done", j->epochs_done);
    cJSON_AddStringToObject(o, "output", j->spec.output);
    cJSON_AddItemToObject(o, "submitted", vt__time(j->submitted));
    cJSON_AddItemToObject(o, "started", vt__time(j->started));
    cJSON_AddItemToObject(o, "finished", vt__time(j->finished));
    cJSON_AddBoolToObject(o, "cancel_requested", j->cancel_requested);
    if (j->state == VT_JOB_FAILED && j->error)
        cJSON_AddStringToObject(o, "error", j->error);
    if (j->state == VT_JOB_CANCELLED && j->reason)
        cJSON_AddStringToObject(o, "reason", j->reason);
    if (j->state == VT_JOB_RUNNING && j->has_progress)
        cJSON_AddItemToObject(o, "progress", vt_progress_json(&j->progress, j->phase));
    if (j->epochs_done > 0 && cJSON_GetArraySize(j->metrics) > 0) {
        const cJSON *last = cJSON_GetArrayItem(j->metrics, cJSON_GetArraySize(j->metrics) - 1);
        const cJSON *kept = cJSON_GetObjectItemCaseSensitive(last, "kept_epoch"), *m;
        cJSON_AddItemToObject(o, "last_epoch", cJSON_Duplicate(last, 1));
        /* keep_best: the metrics of the epoch whose model the job keeps */
        cJSON_ArrayForEach(m, j->metrics) {
            const cJSON *ep = cJSON_GetObjectItemCaseSensitive(m, "epoch");
            if (cJSON_IsNumber(kept) && cJSON_IsNumber(ep) && ep->valueint == kept->valueint) {
                cJSON_AddItemToObject(o, "kept_epoch", cJSON_Duplicate(m, 1));
                break;
            }
        }
    }
    if (view == VT_JOB_VIEW_FULL) {
        cJSON_AddItemToObject(o, "spec", cJSON_Parse(j->spec_json));
        cJSON_AddItemToObject(o, "metrics", cJSON_Duplicate(j->metrics, 1));
    }
    return o;
}

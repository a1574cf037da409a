/* ops.c - the protocol's operations (see ops.h and proto/PROTOCOL.md).
 *
 * Visibility: a job's owner, root and members of the admin group see a job's
 * details and may watch, cancel and predict with it; other users see only
 * its id, owner and state.  Paths in requests must be absolute: the daemon
 * has no working directory of the client's.
 */
#include "ops.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/clock.h"
#include "../common/creds.h"
#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/log.h"
#include "../engine/base.h"
#include "../engine/jobspec.h"
#include "../engine/writer.h"

#define VT__WATCH_REPLAY 100 /* log events a new watcher is sent first, at most */

static void vt__reply(vt_conn *c, const cJSON *id, cJSON *body)
{
    vt_conn_send(c, vt_proto_ok(id, body), 0);
}

static void vt__fail(vt_conn *c, const cJSON *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void vt__fail(vt_conn *c, const cJSON *id, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vt_conn_send(c, vt_proto_error(id, code, msg), 0);
}

/* The job named by "job" that the caller may manage, or NULL after replying
 * with the reason. */
static vt_job *vt__own_job(vt_conn *c, const cJSON *id, const cJSON *req)
{
    int64_t jid = 0;
    vt_job *j;
    if (vt_proto_get_int(req, "job", 1, &jid) < 0) {
        vt__fail(c, id, VT_EINVAL, "%s", vt_error_msg());
        return NULL;
    }
    if (!(j = vt_jobs_find(&c->dm->jobs, jid))) {
        vt__fail(c, id, VT_ENOTFOUND, "no job %lld", (long long)jid);
        return NULL;
    }
    if (j->uid != c->uid && !c->admin) {
        vt__fail(c, id, VT_EPERM, "job %lld belongs to %s", (long long)jid, j->user);
        return NULL;
    }
    return j;
}

static vt_job_view vt__view(const vt_conn *c, const vt_job *j)
{
    return j->uid == c->uid || c->admin ? VT_JOB_VIEW_SUMMARY : VT_JOB_VIEW_FOREIGN;
}

/* ---- hello, status, list, job ------------------------------------------ */

static void vt__hello(vt_conn *c, const cJSON *id, const cJSON *req)
{
    int64_t version = 0;
    if (vt_proto_get_int(req, "version", 1, &version) < 0) {
        vt__fail(c, id, VT_EPROTO, "%s", vt_error_msg());
        return;
    }
    if (version != VT_PROTO_VERSION) {
        vt__fail(c, id, VT_EPROTO, "protocol version %lld is not supported (this daemon "
                 "speaks %d)", (long long)version, VT_PROTO_VERSION);
        return;
    }
    c->hello = 1;
    cJSON *b = cJSON_CreateObject(), *u;
    cJSON_AddNumberToObject(b, "version", VT_PROTO_VERSION);
    cJSON_AddStringToObject(b, "server", "vggtuned " VT_VERSION);
    cJSON_AddNumberToObject(b, "max_frame", (double)VT_PROTO_MAX_FRAME);
    u = cJSON_AddObjectToObject(b, "user");
    cJSON_AddNumberToObject(u, "uid", c->uid);
    cJSON_AddStringToObject(u, "name", c->user);
    cJSON_AddBoolToObject(u, "admin", c->admin);
    vt__reply(c, id, b);
}

/* Sets field of object o to v (added when missing). */
static void vt__set_num(cJSON *o, const char *field, double v)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(o, field);
    if (cJSON_IsNumber(f))
        cJSON_SetNumberValue(f, v);
    else
        cJSON_AddNumberToObject(o, field, v);
}

/* Puts the job table's counts into the device's status snapshot d: the
 * queue totals and each user's running and queued jobs, so that status
 * agrees with list.  The snapshot is refreshed between steps, up to a
 * second late (and during a long step, later); it keeps the device time
 * and shares.  Users without queued or running jobs or requests in
 * progress are dropped; users whose jobs the device has not seen yet are
 * added. */
static void vt__status_counts(const vt_jobs *js, cJSON *d)
{
    cJSON *users = cJSON_GetObjectItemCaseSensitive(d, "users"), *q, *u, *next;
    int running = 0, queued = 0;
    if (!cJSON_IsArray(users)) {
        cJSON_DeleteItemFromObjectCaseSensitive(d, "users");
        users = cJSON_AddArrayToObject(d, "users");
    }
    for (u = users ? users->child : NULL; u; u = next) {
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(u, "uid");
        const cJSON *reqs = cJSON_GetObjectItemCaseSensitive(u, "requests");
        next = u->next;
        int r = cJSON_IsNumber(uid) ? vt_jobs_count(js, (uid_t)uid->valuedouble, VT_JOB_RUNNING) : 0;
        int w = cJSON_IsNumber(uid) ? vt_jobs_count(js, (uid_t)uid->valuedouble, VT_JOB_QUEUED) : 0;
        if (r + w == 0 && !(cJSON_IsNumber(reqs) && reqs->valuedouble > 0)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(users, u));
            continue;
        }
        vt__set_num(u, "running", r);
        vt__set_num(u, "queued", w);
    }
    for (const vt_job *j = js->head; j; j = j->next) {
        int seen = 0;
        if (j->state != VT_JOB_RUNNING && j->state != VT_JOB_QUEUED)
            continue;
        running += j->state == VT_JOB_RUNNING;
        queued += j->state == VT_JOB_QUEUED;
        cJSON_ArrayForEach(u, users) {
            const cJSON *uid = cJSON_GetObjectItemCaseSensitive(u, "uid");
            seen |= cJSON_IsNumber(uid) && (uid_t)uid->valuedouble == j->uid;
        }
        if (seen || !users || !(u = cJSON_CreateObject()))
            continue;
        cJSON_AddStringToObject(u, "user", j->user);
        cJSON_AddNumberToObject(u, "uid", j->uid);
        cJSON_AddNumberToObject(u, "running", vt_jobs_count(js, j->uid, VT_JOB_RUNNING));
        cJSON_AddNumberToObject(u, "queued", vt_jobs_count(js, j->uid, VT_JOB_QUEUED));
        cJSON_AddNumberToObject(u, "requests", 0);
        cJSON_AddNumberToObject(u, "device_s", 0);
        cJSON_AddNumberToObject(u, "share", 0);
        cJSON_AddItemToArray(users, u);
    }
    if (!cJSON_IsObject(q = cJSON_GetObjectItemCaseSensitive(d, "queue"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(d, "queue");
        q = cJSON_AddObjectToObject(d, "queue");
    }
    if (q) {
        vt__set_num(q, "running", running);
        vt__set_num(q, "queued", queued);
    }
}

static void vt__status(vt_conn *c, const cJSON *id)
{
    vt_daemon *dm = c->dm;
    cJSON *d = dm->stats ? cJSON_Parse(dm->stats) : cJSON_CreateObject(), *b;
    if (!d)
        d = cJSON_CreateObject();
    vt__status_counts(&dm->jobs, d);
    cJSON_AddStringToObject(d, "version", VT_VERSION);
    cJSON_AddNumberToObject(d, "uptime_s", vt_clock_wall() - dm->started);
    cJSON_AddBoolToObject(d, "ready", dm->ready);
    b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "daemon", d);
    vt__reply(c, id, b);
}

static void vt__list(vt_conn *c, const cJSON *id, const cJSON *req)
{
    int all = 0;
    cJSON *b, *arr;
    if (vt_proto_get_bool(req, "all", 0, &all) < 0) {
        vt__fail(c, id, VT_EINVAL, "%s", vt_error_msg());
        return;
    }
    b = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(b, "jobs");
    for (vt_job *j = c->dm->jobs.head; j; j = j->next) {
        int mine = j->uid == c->uid;
        int active = j->state == VT_JOB_QUEUED || j->state == VT_JOB_RUNNING;
        /* Others' jobs while they use the queue (in outline unless we are
         * an admin); their finished jobs only for admins asking for all. */
        if (!mine && !active && !(all && c->admin))
            continue;
        cJSON_AddItemToArray(arr, vt_job_json(&c->dm->jobs, j, vt__view(c, j)));
    }
    vt__reply(c, id, b);
}

static void vt__job(vt_conn *c, const cJSON *id, const cJSON *req)
{
    vt_job *j = vt__own_job(c, id, req);
    if (j) {
        cJSON *b = cJSON_CreateObject();
        cJSON *job = vt_job_json(&c->dm->jobs, j, VT_JOB_VIEW_FULL);
        /* the daemon's resident trunk: the one the job started on, or (not
         * yet started) the one it would */
        if (job && !j->spec.weights)
            cJSON_AddStringToObject(job, "trunk", j->trunk ? j->trunk
                                                  : c->dm->cfg.weights[0] ? c->dm->cfg.weights
                                                                          : VT_BASE_RANDOM_DESC);
        /* what the job computes in: bf16 only where the backend has it
         * (known once the device is up) */
        if (job && c->dm->ready)
            cJSON_AddStringToObject(job, "compute",
                                    j->spec.precision != VT_PREC_FP32 && c->dm->bf16 ? "bf16"
                                                                                     : "fp32");
        if (job && j->preprocess[0]) /* data.preprocess "auto", resolved */
            cJSON_AddStringToObject(job, "preprocess", j->preprocess);
        cJSON_AddItemToObject(b, "job", job);
        vt__reply(c, id, b);
    }
}

/* ---- submit ------------------------------------------------------------ */

static int vt__absolute(const char *field, const char *path)
{
    if (path && path[0] != '/')
        return vt_error_set(VT_EINVAL, "%s must be an absolute path (the daemon does not "
                            "know your working directory): %s", field, path);
    return 0;
}

/* Refuses (VT_ESTATE, `what` starting the message) the model of job src,
 * which succeeded, when the jobs say it is not there to use: a job running
 * in its folder with overwrite replaces it (without, it is refused the
 * folder), or a later job that succeeded there has.  The jobs alone, not
 * the files: this thread looks up no path (the trainer and the request's
 * reading thread check the files). */
static int vt__model_there(const vt_daemon *dm, const vt_job *src, const char *what)
{
    const vt_job *x = vt_jobs_output_job(&dm->jobs, src->spec.output, VT_JOB_RUNNING);
    if (x && x->spec.overwrite)
        return vt_error_set(VT_ESTATE, "%sjob %lld's model in %s is being replaced by job %lld "
                            "(running, with overwrite): it is kept in %s/" VT_OUTPUT_ASIDE
                            " until that job succeeds, and put back if it fails or is "
                            "cancelled", what, (long long)src->id, src->spec.output,
                            (long long)x->id, src->spec.output);
    x = vt_jobs_output_job(&dm->jobs, src->spec.output, VT_JOB_SUCCEEDED);
    if (x && x->id > src->id)
        return vt_error_set(VT_ESTATE, "%sjob %lld has no model any more: "
                            "%s/model.safetensors was replaced by job %lld's", what,
                            (long long)src->id, src->spec.output, (long long)x->id);
    return 0;
}

/* Replies to a submission the store did not record (code: its error):
 * the job was not queued.  A full state directory is told as the
 * administrator's to free, not as the user's disk; its path goes only to
 * the daemon's log (no reply shows the state directory). */
static void vt__fail_unrecorded(vt_conn *c, const cJSON *id, int code)
{
    if (code != VT_EIO || !vt_store_full(c->dm->store)) {
        vt__fail(c, id, code, "cannot record the job: %s", vt_error_msg());
        return;
    }
    vt_log_error("cannot record a job %s submitted: the state directory %s is full (%s)",
                 c->user, c->dm->cfg.state_dir, vt_error_msg());
    vt__fail(c, id, VT_EIO, "the daemon's state directory is full, so the job was not "
             "queued: an administrator must free space there (the daemon's log names it), "
             "then submit it again");
}

/* Resolves init_job: a finished job of the same user whose model starts the
 * head. */
static int vt__resolve_init_job(vt_conn *c, vt_jobspec *s)
{
    vt_job *src = vt_jobs_find(&c->dm->jobs, s->init_job);
    if (!src)
        return vt_error_set(VT_ENOTFOUND, "init_job: no job %lld", (long long)s->init_job);
    if (src->uid != c->uid)
        return vt_error_set(VT_EPERM, "init_job: job %lld belongs to %s, not to you",
                            (long long)s->init_job, src->user);
    if (src->state != VT_JOB_SUCCEEDED)
        return vt_error_set(VT_ESTATE, "init_job: job %lld has not succeeded (it is %s)",
                            (long long)s->init_job, vt_job_state_name(src->state));
    int rc = vt__model_there(c->dm, src, "init_job: ");
    if (rc < 0)
        return rc;
    if (src->spec.image_size != s->image_size)
        return vt_error_set(VT_EINVAL, "init_job: job %lld was trained at image_size %d, "
                            "this job asks for %d", (long long)s->init_job,
                            src->spec.image_size, s->image_size);
    /* The head's layout comes from that job: a different one is a mistake,
     * said now rather than when the job starts.  (A source that took its
     * layout from a model, init or init_job, knows it once it has started,
     * VT_DEV_SPEC; before, the trainer checks.) */
    if (s->head_given && (src->spec.head_given || !src->spec.init) &&
        (s->nhidden != src->spec.nhidden ||
         memcmp(s->hidden, src->spec.hidden, sizeof(int) * (size_t)s->nhidden) != 0)) {
        char a[128] = "", b[128] = "";
        vt_jobspec_layout(s->hidden, s->nhidden, b, sizeof b);
        vt_jobspec_layout(src->spec.hidden, src->spec.nhidden, a, sizeof a);
        return vt_error_set(VT_EINVAL, "head.dense [%s] conflicts with the head of job %lld, "
                            "which is [%s]; leave head.dense (--dense) out to use it", b,
                            (long long)s->init_job, a);
    }
    return vt_jobs_init_model(&c->dm->jobs, s);
}

static void vt__submit(vt_conn *c, const cJSON *id, const cJSON *req)
{
    vt_daemon *dm = c->dm;
    const cJSON *doc = cJSON_GetObjectItemCaseSensitive(req, "job");
    vt_jobspec spec;
    vt_job *j = NULL;
    char *text;
    int rc;

    vt_jobspec_defaults(&spec);
    if (dm->stopping) {
        vt__fail(c, id, VT_EBUSY, "the daemon is shutting down; submit again once it is back");
        return;
    }
    if (!cJSON_IsObject(doc)) {
        vt__fail(c, id, VT_EINVAL, "job must be an object (the job document)");
        return;
    }
    if (!(text = cJSON_PrintUnformatted(doc))) {
        vt__fail(c, id, VT_ENOMEM, "out of memory");
        return;
    }
    rc = vt_jobspec_parse(&spec, text, strlen(text));
    free(text);
    if (rc < 0 || (rc = vt__absolute("data.train", spec.train_dir)) < 0 ||
        (rc = vt__absolute("data.val", spec.val_dir)) < 0 ||
        (rc = vt__absolute("weights", spec.weights)) < 0 ||
        (rc = vt__absolute("init", spec.init)) < 0 ||
        (rc = vt__absolute("output", spec.output)) < 0 ||
        (spec.init_job && (rc = vt__resolve_init_job(c, &spec)) < 0)) {
        vt__fail(c, id, rc, "%s", vt_error_msg());
        goto done;
    }
    /* Two jobs writing one directory would overwrite each other's model.
     * (Paths as written: the trainer checks what is in the directory when
     * the job starts, see vt__check_model_owner, and that the output is
     * not inside the data; looking paths up here would let a hung mount
     * stop the loop.) */
    vt_job *busy = vt_jobs_output_job(&dm->jobs, spec.output, VT_JOB_RUNNING);
    if (!busy)
        busy = vt_jobs_output_job(&dm->jobs, spec.output, VT_JOB_QUEUED);
    if (busy) {
        vt__fail(c, id, VT_EBUSY, "output %s is where job %lld (%s) writes; give this job "
                 "another output directory", spec.output, (long long)busy->id,
                 vt_job_state_name(busy->state));
        goto done;
    }
    /* (A finished job's model in the directory is refused, unless the job
     * may overwrite it, by what the directory holds: by vggtune submit,
     * and by the trainer when the job starts.) */
    if (vt_jobs_count(&dm->jobs, c->uid, VT_JOB_QUEUED) >= dm->cfg.max_queued) {
        vt__fail(c, id, VT_EBUSY, "you have %d job%s waiting (queued, not yet started), the "
                 "limit; submit more when some have started", dm->cfg.max_queued,
                 dm->cfg.max_queued == 1 ? "" : "s");
        goto done;
    }
    size_t need;
    if (dm->job_memory && (rc = vt_device_check_fits(&spec, dm->bf16, dm->job_memory, &need)) < 0) {
        vt__fail(c, id, rc, "%s", vt_error_msg());
        goto done;
    }
    {
        vt_store_job sj = {.uid = c->uid, .gid = c->gid, .user = c->user, .name = spec.name,
                           .state = "queued", .submitted = vt_clock_wall()};
        int64_t jid;
        char *spec_json = vt_jobspec_to_json(&spec);
        sj.spec = spec_json;
        rc = spec_json ? vt_store_insert(dm->store, &sj, &jid) : VT_ENOMEM;
        free(spec_json);
        if (rc < 0 || !(j = vt_job_new(jid, c->uid, c->gid, c->user, &spec))) {
            vt__fail_unrecorded(c, id, rc < 0 ? rc : VT_ENOMEM);
            goto done;
        }
        j->submitted = sj.submitted;
    }
    vt_jobs_add(&dm->jobs, j);
    vt_daemon_drop_stale_checkpoint(dm, j->id);
    vt_daemon_start_job(dm, j);
    vt_log_info("job %lld (%s) submitted by %s: %s, %d epoch%s", (long long)j->id,
                j->spec.name, c->user, vt_jobspec_mode_name(j->spec.trainable_blocks),
                j->spec.epochs, j->spec.epochs == 1 ? "" : "s");
    cJSON *b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "job", vt_job_json(&dm->jobs, j, VT_JOB_VIEW_SUMMARY));
    vt__reply(c, id, b);
done:
    vt_jobspec_free(&spec);
}

/* ---- watch, cancel ----------------------------------------------------- */

static cJSON *vt__job_body(vt_daemon *dm, const vt_job *j)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "job", vt_job_json(&dm->jobs, j, VT_JOB_VIEW_SUMMARY));
    return b;
}

static int vt__ended(const vt_job *j)
{
    return j->state == VT_JOB_SUCCEEDED || j->state == VT_JOB_FAILED ||
           j->state == VT_JOB_CANCELLED;
}

/* Sends one stored log event to a watcher (vt_store_each_event's cb). */
typedef struct {
    vt_conn *c;
    const cJSON *id;
} vt__replay;

static int vt__replay_event(void *ud, const char *level, const char *message)
{
    vt__replay *r = ud;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "level", level ? level : "info");
    cJSON_AddStringToObject(b, "message", message ? message : "");
    vt_conn_send(r->c, vt_proto_event(r->id, "log", b), 0);
    return 0;
}

static void vt__watch(vt_conn *c, const cJSON *id, const cJSON *req)
{
    vt_job *j = vt__own_job(c, id, req);
    vt__replay r = {c, id};
    const cJSON *ev;
    if (!j)
        return;
    vt_conn_send(c, vt_proto_event(id, "state", vt__job_body(c->dm, j)), 0);
    /* What the job said before this watch began (its warnings at start) */
    if (vt_store_each_event(c->dm->store, j->id, VT__WATCH_REPLAY, vt__replay_event, &r) < 0)
        vt_log_warn("job %lld: %s", (long long)j->id, vt_error_msg());
    cJSON_ArrayForEach(ev, j->unsaved_events) /* (after those: the store has not taken them) */
        vt__replay_event(&r, cJSON_GetStringValue(cJSON_GetObjectItem(ev, "level")),
                         cJSON_GetStringValue(cJSON_GetObjectItem(ev, "message")));
    for (int e = 0; e < cJSON_GetArraySize(j->metrics); e++) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddItemToObject(b, "metrics",
                              cJSON_Duplicate(cJSON_GetArrayItem(j->metrics, e), 1));
        vt_conn_send(c, vt_proto_event(id, "epoch", b), 0);
    }
    if (vt__ended(j)) {
        cJSON *b = vt__job_body(c->dm, j);
        cJSON_AddStringToObject(b, "event", "end");
        vt__reply(c, id, b);
        return;
    }
    if (vt_daemon_subscribe(c->dm, VT_SUB_WATCH, c->id, id, j->id, 0) < 0)
        vt__fail(c, id, VT_ENOMEM, "out of memory");
}

static void vt__cancel(vt_conn *c, const cJSON *id, const cJSON *req)
{
    vt_job *j = vt__own_job(c, id, req);
    char reason[128];
    if (!j)
        return;
    if (vt__ended(j)) {
        vt__fail(c, id, VT_ESTATE, "job %lld has already ended (%s)", (long long)j->id,
                 vt_job_state_name(j->state));
        return;
    }
    snprintf(reason, sizeof reason, "cancelled by %s", c->user);
    vt_job_set_text(&j->reason, reason);
    if (!j->cancel_requested) {
        if (vt_device_cancel(c->dm->dev, j->id) < 0) {
            vt__fail(c, id, VT_ENOMEM, "out of memory");
            return;
        }
        j->cancel_requested = 1;
    }
    if (j->cancel_waits) { /* (as vt_ops_cancel_waits answered the first) */
        vt__reply(c, id, vt__job_body(c->dm, j));
        return;
    }
    if (vt_daemon_subscribe(c->dm, VT_SUB_CANCEL, c->id, id, j->id, 0) < 0)
        vt__fail(c, id, VT_ENOMEM, "out of memory");
}

/* ---- predict, eval ----------------------------------------------------- */

/* The model of a finished job the caller may use, or NULL after replying. */
static vt_job *vt__model_job(vt_conn *c, const cJSON *id, const cJSON *req, char *model,
                             size_t len)
{
    vt_job *j = vt__own_job(c, id, req);
    if (!j)
        return NULL;
    if (j->state != VT_JOB_SUCCEEDED) {
        vt__fail(c, id, VT_ESTATE, "job %lld %s", (long long)j->id,
                 j->state == VT_JOB_QUEUED    ? "is queued, so it has no model yet"
                 : j->state == VT_JOB_RUNNING ? "is still running, so it has no model yet"
                 : j->state == VT_JOB_FAILED  ? "failed, so it has no model"
                                              : "was cancelled, so it has no model");
        return NULL;
    }
    if (vt__model_there(c->dm, j, "") < 0) {
        vt__fail(c, id, VT_ESTATE, "%s", vt_error_msg());
        return NULL;
    }
    if (vt_path(model, len, "%s/model.safetensors", j->spec.output) < 0) {
        vt__fail(c, id, VT_EINVAL, "%s", vt_error_msg());
        return NULL;
    }
    return j;
}

/* After device request r was sent (rc: how that went): the connection
 * waits for its reply, or is told why there will be none.  (The reply
 * cannot come before the subscription: replies are taken on this thread.) */
static void vt__awaited(vt_conn *c, const cJSON *id, uint64_t r, int rc)
{
    if (rc < 0) { /* (VT_EBUSY once the device has stopped taking requests) */
        vt__fail(c, id, rc, "%s", vt_error_msg());
    } else if (vt_daemon_subscribe(c->dm, VT_SUB_REPLY, c->id, id, 0, r) < 0) {
        vt_device_drop(c->dm->dev, r); /* (nobody would get its reply) */
        vt__fail(c, id, VT_ENOMEM, "out of memory");
    }
}

static void vt__predict(vt_conn *c, const cJSON *id, const cJSON *req)
{
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(req, "images"), *it;
    const char *paths[VT_PROTO_MAX_IMAGES];
    char model[PATH_MAX];
    int64_t top = 3;
    int n = 0;
    vt_creds cr;
    const vt_job *j = vt__model_job(c, id, req, model, sizeof model);

    if (!j)
        return;
    if (vt_proto_get_int(req, "top", 0, &top) < 0 || top < 1 || top > VT_PROTO_TOP_MAX) {
        vt__fail(c, id, VT_EINVAL, "top must be an integer from 1 to %d", VT_PROTO_TOP_MAX);
        return;
    }
    if (!cJSON_IsArray(imgs) || cJSON_GetArraySize(imgs) < 1 ||
        cJSON_GetArraySize(imgs) > VT_PROTO_MAX_IMAGES) {
        vt__fail(c, id, VT_EINVAL, "images must be an array of 1 to %d paths", VT_PROTO_MAX_IMAGES);
        return;
    }
    cJSON_ArrayForEach(it, imgs) {
        if (!cJSON_IsString(it) || it->valuestring[0] != '/') {
            vt__fail(c, id, VT_EINVAL, "images[%d] must be an absolute path", n);
            return;
        }
        paths[n++] = it->valuestring;
    }
    vt_creds_for_user(&cr, c->uid, c->gid);
    uint64_t r = ++c->dm->next_req;
    vt__awaited(c, id, r, vt_device_predict(c->dm->dev, r, j->id, model, &cr, paths, n,
                                            (int)top));
}

static void vt__eval(vt_conn *c, const cJSON *id, const cJSON *req)
{
    const char *dir = NULL;
    char model[PATH_MAX];
    vt_creds cr;
    const vt_job *j = vt__model_job(c, id, req, model, sizeof model);
    if (!j)
        return;
    if (vt_proto_get_str(req, "data", 1, &dir) < 0 || dir[0] != '/') {
        vt__fail(c, id, VT_EINVAL, "data must be an absolute path to a folder with one "
                 "sub-folder per class");
        return;
    }
    vt_creds_for_user(&cr, c->uid, c->gid);
    uint64_t r = ++c->dm->next_req;
    vt__awaited(c, id, r, vt_device_eval(c->dm->dev, r, j->id, model, &cr, dir));
}

/* ---- dispatch ---------------------------------------------------------- */

void vt_ops_dispatch(vt_conn *c, const char *line, size_t len)
{
    cJSON *root = NULL;
    const cJSON *id = NULL;
    const char *op = NULL;
    int rc = vt_proto_parse(line, len, &root, &id, &op);

    if (rc < 0) {
        vt__fail(c, id, rc, "%s", vt_error_msg());
        goto done;
    }
    if (!c->hello && strcmp(op, "hello") != 0) {
        vt__fail(c, id, VT_EPROTO, "send hello first");
        goto done;
    }
    if (!strcmp(op, "hello"))
        vt__hello(c, id, root);
    else if (!strcmp(op, "submit"))
        vt__submit(c, id, root);
    else if (!strcmp(op, "list"))
        vt__list(c, id, root);
    else if (!strcmp(op, "job"))
        vt__job(c, id, root);
    else if (!strcmp(op, "watch"))
        vt__watch(c, id, root);
    else if (!strcmp(op, "cancel"))
        vt__cancel(c, id, root);
    else if (!strcmp(op, "predict"))
        vt__predict(c, id, root);
    else if (!strcmp(op, "eval"))
        vt__eval(c, id, root);
    else if (!strcmp(op, "status"))
        vt__status(c, id);
    else
        vt__fail(c, id, VT_EINVAL, "unknown op '%s' (hello, submit, list, job, watch, cancel, "
                 "predict, eval, status)", op);
done:
    cJSON_Delete(root);
}

/* ---- notifications from device events ---------------------------------- */

void vt_ops_notify(vt_daemon *dm, int64_t job, const char *kind, cJSON *body)
{
    int droppable = !strcmp(kind, "progress");
    for (vt_sub *s = dm->subs; s; s = s->next) {
        vt_conn *c;
        if (s->kind != VT_SUB_WATCH || s->job != job || !(c = vt_conn_find(dm, s->conn)))
            continue;
        vt_conn_send(c, vt_proto_event(s->req_id, kind, cJSON_Duplicate(body, 1)), droppable);
    }
    cJSON_Delete(body);
}

/* Answers and removes j's subscriptions of kind `kind`, or of both kinds
 * (watch, cancel) with -1. */
static void vt__answer_subs(vt_daemon *dm, const vt_job *j, int kind)
{
    vt_sub **p = &dm->subs;
    while (*p) {
        vt_sub *s = *p;
        vt_conn *c;
        if ((s->kind != VT_SUB_WATCH && s->kind != VT_SUB_CANCEL) ||
            (kind >= 0 && (int)s->kind != kind) || s->job != j->id) {
            p = &s->next;
            continue;
        }
        if ((c = vt_conn_find(dm, s->conn))) {
            cJSON *b = vt__job_body(dm, j);
            if (s->kind == VT_SUB_WATCH)
                cJSON_AddStringToObject(b, "event", "end");
            vt__reply(c, s->req_id, b);
        }
        *p = s->next;
        cJSON_Delete(s->req_id);
        free(s);
    }
}

void vt_ops_job_ended(vt_daemon *dm, const vt_job *j) { vt__answer_subs(dm, j, -1); }

void vt_ops_cancel_waits(vt_daemon *dm, const vt_job *j)
{
    vt__answer_subs(dm, j, VT_SUB_CANCEL);
}

void vt_ops_device_progress(vt_daemon *dm, uint64_t req, const char *phase, int step,
                            int steps)
{
    for (vt_sub *s = dm->subs; s; s = s->next) {
        vt_conn *c;
        cJSON *b, *p;
        if (s->kind != VT_SUB_REPLY || s->req != req || !(c = vt_conn_find(dm, s->conn)))
            continue;
        if (!(b = cJSON_CreateObject()) || !(p = cJSON_AddObjectToObject(b, "progress"))) {
            cJSON_Delete(b);
            return;
        }
        cJSON_AddStringToObject(p, "phase", phase);
        cJSON_AddNumberToObject(p, "step", step);
        cJSON_AddNumberToObject(p, "steps", steps);
        vt_conn_send(c, vt_proto_event(s->req_id, "progress", b), 1);
        return;
    }
}

void vt_ops_device_reply(vt_daemon *dm, uint64_t req, int code, const char *text)
{
    for (vt_sub **p = &dm->subs; *p; p = &(*p)->next) {
        vt_sub *s = *p;
        vt_conn *c;
        if (s->kind != VT_SUB_REPLY || s->req != req)
            continue;
        if ((c = vt_conn_find(dm, s->conn))) {
            if (code < 0) {
                vt_conn_send(c, vt_proto_error(s->req_id, code, text ? text : ""), 0);
            } else {
                cJSON *b = text ? cJSON_Parse(text) : NULL;
                vt__reply(c, s->req_id, b ? b : cJSON_CreateObject());
            }
        }
        *p = s->next;
        cJSON_Delete(s->req_id);
        free(s);
        return;
    }
}

/* server.c - vggtuned's main loop: startup, device events, shutdown.
 *
 * Threads (see DESIGN.md): this file runs on the libuv loop thread, which
 * owns the socket, the connections, the job table and the store, and never
 * computes or decodes.  The device thread (device.c) trains; its events
 * arrive through vt_device_events() and are applied here: job table, store,
 * watchers, in that order, so what a client is told is already durable.
 *
 * Startup: config -> state directory (locked) -> store -> device thread
 * (it makes the backend and loads the resident trunk on its own) -> jobs
 * from the store (queued and interrupted ones go to the device thread,
 * interrupted ones resume from their checkpoint) -> socket (created, or
 * passed by systemd) -> READY=1 once the trunk is resident.
 * SIGTERM/SIGINT: stop accepting, the device thread checkpoints running jobs
 * mid-epoch, exit 0.  SIGHUP is logged and otherwise ignored.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/log.h"
#include "../common/pool.h"
#include "conn.h"
#include "daemon.h"
#include "notify.h"
#include "ops.h"

int vt_daemon_subscribe(vt_daemon *dm, vt_sub_kind kind, uint64_t conn, const cJSON *req_id,
                        int64_t job, uint64_t req)
{
    vt_sub *s = calloc(1, sizeof *s);
    if (!s || !(s->req_id = req_id ? cJSON_Duplicate(req_id, 1) : cJSON_CreateNull())) {
        free(s);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    s->kind = kind;
    s->conn = conn;
    s->job = job;
    s->req = req;
    s->next = dm->subs;
    dm->subs = s;
    return 0;
}

void vt_daemon_unsubscribe_conn(vt_daemon *dm, uint64_t conn)
{
    vt_sub **p = &dm->subs;
    while (*p) {
        vt_sub *s = *p;
        if (s->conn == conn) {
            if (s->kind == VT_SUB_REPLY && dm->dev) /* nobody to answer: stop it */
                vt_device_drop(dm->dev, s->req);
            *p = s->next;
            cJSON_Delete(s->req_id);
            free(s);
        } else {
            p = &s->next;
        }
    }
}

/* ---- store <-> job table ----------------------------------------------- */

static int vt__checkpoint_path(vt_daemon *dm, int64_t id, char *buf, size_t len)
{
    return vt_path(buf, len, "%s/checkpoints/%lld.safetensors", dm->cfg.state_dir,
                   (long long)id);
}

/* A job that ended needs its checkpoint no more (nothing resumes a failed
 * job), once the store records the end: until then a restart would take
 * it for running, and without its checkpoint run it again from the
 * start. */
static void vt__drop_checkpoint(vt_daemon *dm, const vt_job *j)
{
    char ckpt[PATH_MAX];
    if (!j->unsaved && j->state != VT_JOB_RUNNING && j->state != VT_JOB_QUEUED &&
        vt__checkpoint_path(dm, j->id, ckpt, sizeof ckpt) == 0)
        unlink(ckpt);
}

/* A store write of job j failed (a full or failing disk under the state
 * directory): the job goes on, and its record is written again, whole, by
 * vt__resave once the store takes writes.  Said once, not at every epoch;
 * not at all for a job whose row vt__resave found gone (its writes fail
 * for good, and it may run on for hours). */
static void vt__unsaved(vt_job *j)
{
    if (j->unrecorded)
        return;
    if (!j->unsaved)
        vt_log_error("job %lld: %s; its record in the store is behind until a write "
                     "succeeds (retried every second)", (long long)j->id, vt_error_msg());
    j->unsaved = 1;
}

static int vt__update_row(vt_daemon *dm, const vt_job *j)
{
    vt_store_job sj = {.id = j->id, .state = vt_job_state_name(j->state),
                       .started = j->started, .finished = j->finished,
                       .epochs_done = j->epochs_done, .error = j->error, .reason = j->reason};
    return vt_store_update(dm->store, &sj);
}

static void vt__persist(vt_daemon *dm, vt_job *j)
{
    if (vt__update_row(dm, j) < 0)
        vt__unsaved(j);
}

/* Records a log event of job j: in the store, or, when the store does not
 * take it or holds earlier events of j's back, after them in
 * j->unsaved_events, which vt__resave writes once the store takes writes
 * (the warnings a full state directory causes are the ones a later watch
 * must still show). */
static void vt__add_event(vt_daemon *dm, vt_job *j, const char *level, const char *message)
{
    cJSON *e;
    if (!j->unsaved_events && vt_store_add_event(dm->store, j->id, level, message) == 0)
        return;
    if (j->unrecorded) /* (its row is gone: nothing to write them with) */
        return;
    if (!j->unsaved_events)
        vt__unsaved(j);
    if (!(e = cJSON_CreateObject()) || !cJSON_AddStringToObject(e, "level", level) ||
        !cJSON_AddStringToObject(e, "message", message) ||
        (!j->unsaved_events && !(j->unsaved_events = cJSON_CreateArray())) ||
        !cJSON_AddItemToArray(j->unsaved_events, e)) {
        cJSON_Delete(e);
        vt_log_error("job %lld: out of memory: its log loses: %s", (long long)j->id, message);
    }
}

/* Writes j's log events the store did not take, in order; 0, or the error
 * of the first that it does not take yet (it and the later ones stay). */
static int vt__resave_events(vt_daemon *dm, vt_job *j)
{
    cJSON *e;
    while (j->unsaved_events && (e = j->unsaved_events->child)) {
        int rc = vt_store_add_event(dm->store, j->id,
                                    cJSON_GetStringValue(cJSON_GetObjectItem(e, "level")),
                                    cJSON_GetStringValue(cJSON_GetObjectItem(e, "message")));
        if (rc < 0)
            return rc;
        cJSON_Delete(cJSON_DetachItemViaPointer(j->unsaved_events, e));
    }
    cJSON_Delete(j->unsaved_events);
    j->unsaved_events = NULL;
    return 0;
}

/* Writes the whole record of a job whose earlier write failed: its log
 * events, its document, every epoch's metrics, then its row (state last, so
 * that a "succeeded" read back after a restart comes with its history).  Only the
 * last epoch's drops the rows after it: a try that fails part way (each
 * epoch is its own write) leaves the later ones that the store had.  Without
 * this, a job that finished while the state directory was full stays
 * "running" in the store, and after a restart runs again from the start,
 * removing the model it had finished. */
static void vt__resave(vt_daemon *dm, vt_job *j)
{
    int n = cJSON_GetArraySize(j->metrics), rc = vt__resave_events(dm, j);
    char *text;
    if (rc == 0 && j->spec_json)
        rc = vt_store_set_spec(dm->store, j->id, j->spec_json, j->preprocess, j->trunk);
    for (int i = 0; rc == 0 && i < n; i++) {
        cJSON *m = cJSON_GetArrayItem(j->metrics, i), *ep = cJSON_GetObjectItem(m, "epoch");
        if (!(text = cJSON_PrintUnformatted(m)))
            return; /* out of memory: the next tick tries again */
        rc = vt_store_put_metrics(dm->store, j->id, cJSON_IsNumber(ep) ? ep->valueint : i + 1,
                                  text, i == n - 1);
        free(text);
    }
    if (rc == 0)
        rc = vt__update_row(dm, j);
    if (rc == VT_ENOTFOUND) { /* its row was deleted (by hand): nothing to bring up to date */
        vt_log_error("job %lld: %s; its record is not retried", (long long)j->id,
                     vt_error_msg());
        j->unsaved = 0;
        j->unrecorded = 1;
        cJSON_Delete(j->unsaved_events);
        j->unsaved_events = NULL;
    } else if (rc == 0) {
        j->unsaved = 0;
        vt_log_info("job %lld: its record in the store is up to date again", (long long)j->id);
        vt__drop_checkpoint(dm, j);
    }
}

static void vt__resave_all(vt_daemon *dm)
{
    for (vt_job *j = dm->jobs.head; j; j = j->next)
        if (j->unsaved)
            vt__resave(dm, j);
}

void vt_daemon_drop_stale_checkpoint(vt_daemon *dm, int64_t id)
{
    char path[PATH_MAX];
    if (vt__checkpoint_path(dm, id, path, sizeof path) == 0 && unlink(path) == 0)
        vt_log_warn("job %lld: removed %s, left by an earlier job of the same number",
                    (long long)id, path);
}

void vt_daemon_start_job(vt_daemon *dm, vt_job *j)
{
    vt_dev_job dj = {.id = j->id, .spec = &j->spec};
    vt_creds_for_user(&dj.creds, j->uid, j->gid);
    if (vt__checkpoint_path(dm, j->id, dj.checkpoint, sizeof dj.checkpoint) < 0)
        dj.checkpoint[0] = '\0'; /* no room for checkpoints: the job still runs */
    vt_device_add_job(dm->dev, &dj);
}

static int vt__load_metric(void *ud, int epoch, const char *json)
{
    vt_job *j = ud;
    cJSON *m = cJSON_Parse(json);
    (void)epoch;
    if (m)
        cJSON_AddItemToArray(j->metrics, m);
    return 0;
}

static vt_job_state vt__state_from_name(const char *s)
{
    for (int k = VT_JOB_QUEUED; k <= VT_JOB_CANCELLED; k++)
        if (!strcmp(s, vt_job_state_name((vt_job_state)k)))
            return (vt_job_state)k;
    return VT_JOB_FAILED;
}

/* Parses a stored job document.  Stores written before init_job was kept
 * alone hold both init (its resolved path) and init_job, which the parser
 * refuses: init is dropped, and resolved again by the caller. */
static int vt__parse_stored(vt_jobspec *spec, const char *text)
{
    cJSON *doc = cJSON_Parse(text);
    const cJSON *ij = doc ? cJSON_GetObjectItemCaseSensitive(doc, "init_job") : NULL;
    char *clean = NULL;
    int rc;
    if (ij && !cJSON_IsNull(ij)) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "init");
        clean = cJSON_PrintUnformatted(doc);
    }
    cJSON_Delete(doc);
    rc = vt_jobspec_parse(spec, clean ? clean : text, strlen(clean ? clean : text));
    free(clean);
    return rc;
}

static int vt__load_job(void *ud, const vt_store_job *sj)
{
    vt_daemon *dm = ud;
    vt_jobspec spec;
    vt_job *j;
    if (vt__parse_stored(&spec, sj->spec) < 0 ||
        (spec.init_job && vt_jobs_init_model(&dm->jobs, &spec) < 0)) {
        vt_log_error("job %lld in the store has an unreadable spec: %s", (long long)sj->id,
                     vt_error_msg());
        vt_jobspec_free(&spec);
        return 0;
    }
    j = vt_job_new(sj->id, sj->uid, sj->gid, sj->user, &spec);
    vt_jobspec_free(&spec);
    if (!j)
        return VT_ENOMEM;
    j->state = vt__state_from_name(sj->state);
    j->submitted = sj->submitted;
    j->started = sj->started;
    j->finished = sj->finished;
    j->epochs_done = sj->epochs_done;
    vt_job_set_text(&j->error, sj->error);
    vt_job_set_text(&j->reason, sj->reason);
    snprintf(j->preprocess, sizeof j->preprocess, "%s", sj->preprocess ? sj->preprocess : "");
    vt_job_set_text(&j->trunk, sj->trunk);
    vt_store_each_metrics(dm->store, j->id, vt__load_metric, j);
    vt_jobs_add(&dm->jobs, j);
    if (j->state == VT_JOB_RUNNING || j->state == VT_JOB_QUEUED) {
        char ck[PATH_MAX];
        if (j->state == VT_JOB_RUNNING && vt__checkpoint_path(dm, j->id, ck, sizeof ck) == 0 &&
            access(ck, F_OK) == 0) {
            vt_log_info("job %lld was running when the daemon stopped; it resumes from its "
                        "last checkpoint", (long long)j->id);
        } else if (j->state == VT_JOB_RUNNING) {
            /* (none written yet, or the last one removed as outdated) */
            vt_log_info("job %lld was running when the daemon stopped, with no checkpoint "
                        "to resume from; it starts again", (long long)j->id);
            vt__add_event(dm, j, "warn", "the daemon stopped with no checkpoint of this "
                          "job to resume from: it starts again from the beginning");
        }
        j->state = VT_JOB_QUEUED;
        vt_daemon_start_job(dm, j);
    } else { /* (a failed job's, kept by versions before 2026-12-06) */
        vt__drop_checkpoint(dm, j);
    }
    return 0;
}

/* ---- device events ----------------------------------------------------- */

/* A running job's document as its trainer runs it (VT_DEV_SPEC) replaces
 * the submitted one, in the table and the store: status then shows the
 * head taken from an init model.  Its preprocessing is kept beside it. */
static void vt__job_spec(vt_daemon *dm, vt_job *j, vt_dev_event *e)
{
    vt_jobspec spec;
    char *json = e->text;
    if (vt_jobspec_parse(&spec, json, strlen(json)) < 0) {
        vt_log_error("job %lld: its running document: %s", (long long)j->id, vt_error_msg());
        return;
    }
    e->text = NULL; /* taken */
    snprintf(j->preprocess, sizeof j->preprocess, "%s", e->phase);
    vt_job_set_text(&j->trunk, e->trunk);
    /* (init_job alone is in the document: the path it was resolved to, again) */
    if (spec.init_job && vt_jobs_init_model(&dm->jobs, &spec) < 0)
        vt_log_warn("job %lld: %s", (long long)j->id, vt_error_msg());
    vt_jobspec_free(&j->spec);
    j->spec = spec;
    free(j->spec_json);
    j->spec_json = json;
    if (vt_store_set_spec(dm->store, j->id, json, j->preprocess, j->trunk) < 0)
        vt__unsaved(j);
}

static void vt__begin_stop(vt_daemon *dm);

static void vt__status_line(vt_daemon *dm)
{
    int running = 0, queued = 0;
    for (vt_job *j = dm->jobs.head; j; j = j->next) {
        running += j->state == VT_JOB_RUNNING;
        queued += j->state == VT_JOB_QUEUED;
    }
    vt_notify_status("%s; %d running, %d queued, %d clients",
                     dm->stopping ? "stopping" : dm->ready ? "ready" : "starting", running,
                     queued, dm->nconns);
}

static void vt__job_state(vt_daemon *dm, vt_dev_event *e)
{
    vt_job *j = vt_jobs_find(&dm->jobs, e->job);
    if (!j)
        return;
    j->state = (vt_job_state)e->state;
    if (j->state == VT_JOB_RUNNING) {
        if (!j->started)
            j->started = vt_clock_wall();
        vt__persist(dm, j);
        vt_log_info("job %lld (%s of %s) is running", (long long)j->id, j->spec.name, j->user);
        /* "preparing" until the trainer's first report (the data scan and
         * the caches can take minutes) */
        j->progress = (vt_progress){
            .epoch = j->epochs_done < j->spec.epochs ? j->epochs_done + 1 : j->spec.epochs,
            .epochs = j->spec.epochs};
        snprintf(j->phase, sizeof j->phase, "preparing");
        j->has_progress = 1;
        cJSON *b = cJSON_CreateObject();
        cJSON_AddItemToObject(b, "job", vt_job_json(&dm->jobs, j, VT_JOB_VIEW_SUMMARY));
        vt_ops_notify(dm, j->id, "state", b);
        b = cJSON_CreateObject();
        cJSON_AddItemToObject(b, "progress", vt_progress_json(&j->progress, j->phase));
        vt_ops_notify(dm, j->id, "progress", b);
        return;
    }
    j->finished = vt_clock_wall();
    j->has_progress = 0;
    if (j->state == VT_JOB_FAILED)
        vt_job_set_text(&j->error, e->text ? e->text : "unknown error");
    if (j->state == VT_JOB_CANCELLED && !j->reason)
        vt_job_set_text(&j->reason, "cancelled");
    if (j->state != VT_JOB_CANCELLED && j->cancel_requested) {
        /* (it ended otherwise before the cancel took effect: its final
         * model written, or a failure that was being put in order) */
        j->cancel_requested = 0;
        vt_job_set_text(&j->reason, NULL);
    }
    vt__persist(dm, j);
    vt__drop_checkpoint(dm, j);
    if (j->state == VT_JOB_FAILED)
        vt_log_warn("job %lld (%s of %s) failed: %s", (long long)j->id, j->spec.name, j->user,
                    j->error);
    else
        vt_log_info("job %lld (%s of %s) %s", (long long)j->id, j->spec.name, j->user,
                    vt_job_state_name(j->state));
    vt_ops_job_ended(dm, j);
}

static void vt__job_epoch(vt_daemon *dm, vt_dev_event *e)
{
    vt_job *j = vt_jobs_find(&dm->jobs, e->job);
    cJSON *m = vt_epoch_metrics_json(&e->metrics), *b;
    char *text = m ? cJSON_PrintUnformatted(m) : NULL;
    if (!j || !m || !text) {
        cJSON_Delete(m);
        free(text);
        return;
    }
    if (vt_store_put_metrics(dm->store, j->id, e->metrics.epoch, text, 1) < 0)
        vt__unsaved(j);
    free(text);
    /* A resumed job may report an epoch again: keep one entry per epoch. */
    while (cJSON_GetArraySize(j->metrics) >= e->metrics.epoch)
        cJSON_DeleteItemFromArray(j->metrics, cJSON_GetArraySize(j->metrics) - 1);
    cJSON_AddItemToArray(j->metrics, cJSON_Duplicate(m, 1));
    j->epochs_done = e->metrics.epoch;
    j->has_progress = 0; /* the epoch's last progress is history: the next one says more */
    vt__persist(dm, j);
    b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "metrics", m);
    vt_ops_notify(dm, j->id, "epoch", b);
}

/* Closes every loop handle (connections, listener, signals, timer), so
 * that uv_run returns once the device thread is gone. */
static void vt__close_handles(vt_daemon *dm)
{
    uv_handle_t *own[] = {(uv_handle_t *)&dm->listener, (uv_handle_t *)&dm->timer,
                          (uv_handle_t *)&dm->sigterm, (uv_handle_t *)&dm->sigint,
                          (uv_handle_t *)&dm->sighup};
    for (vt_conn *c = dm->conns; c; c = c->next)
        vt_conn_close(c);
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (!uv_is_closing(own[i]))
            uv_close(own[i], NULL);
}

static void vt__on_device(void *ud)
{
    vt_daemon *dm = ud;
    vt_dev_event *e = vt_device_events(dm->dev), *next;
    for (; e; e = next) {
        next = e->next;
        vt_job *j;
        cJSON *b;
        switch (e->kind) {
        case VT_DEV_READY:
            if (dm->stopping) /* startup failed meanwhile: never claim readiness */
                break;
            dm->ready = 1;
            dm->job_memory = e->bytes;
            dm->bf16 = e->state;
            vt_log_info("ready on %s, socket %s", e->text ? e->text : "?", dm->cfg.socket);
            vt_notify_ready("ready");
            break;
        case VT_DEV_FATAL:
            vt_log_error("%s", e->text ? e->text : "device thread failed");
            dm->exit_code = 1;
            vt__begin_stop(dm);
            break;
        case VT_DEV_STATE:
            vt__job_state(dm, e);
            vt__status_line(dm);
            break;
        case VT_DEV_CANCEL_WAITS:
            if ((j = vt_jobs_find(&dm->jobs, e->job))) {
                j->cancel_waits = 1;
                vt_ops_cancel_waits(dm, j);
            }
            break;
        case VT_DEV_PROGRESS:
            if ((j = vt_jobs_find(&dm->jobs, e->job))) {
                if (e->progress.epoch == 0) { /* (reading the data: the epoch the job began at) */
                    e->progress.epoch = j->progress.epoch;
                    e->progress.epochs = j->progress.epochs;
                }
                j->progress = e->progress;
                snprintf(j->phase, sizeof j->phase, "%s", e->phase);
                j->has_progress = 1;
                b = cJSON_CreateObject();
                cJSON_AddItemToObject(b, "progress", vt_progress_json(&e->progress, e->phase));
                vt_ops_notify(dm, e->job, "progress", b);
            }
            break;
        case VT_DEV_EPOCH:
            vt__job_epoch(dm, e);
            break;
        case VT_DEV_LOG: {
            const char *lv = e->level <= VT_LOG_ERROR ? "error"
                             : e->level == VT_LOG_WARN ? "warn" : "info";
            if ((j = vt_jobs_find(&dm->jobs, e->job)))
                vt__add_event(dm, j, lv, e->text ? e->text : "");
            b = cJSON_CreateObject();
            cJSON_AddStringToObject(b, "level", lv);
            cJSON_AddStringToObject(b, "message", e->text ? e->text : "");
            vt_ops_notify(dm, e->job, "log", b);
            break;
        }
        case VT_DEV_SPEC:
            if ((j = vt_jobs_find(&dm->jobs, e->job)) && e->text)
                vt__job_spec(dm, j, e);
            break;
        case VT_DEV_REQ_PROGRESS:
            vt_ops_device_progress(dm, e->req, e->phase, e->progress.step, e->progress.steps);
            break;
        case VT_DEV_REPLY:
            vt_ops_device_reply(dm, e->req, e->code, e->text);
            break;
        case VT_DEV_STATS:
            free(dm->stats);
            dm->stats = e->text;
            e->text = NULL;
            break;
        case VT_DEV_STOPPED:
            vt__begin_stop(dm);
            /* The thread has ended: tear everything down. */
            vt__close_handles(dm);
            vt_dev_event_free(e);
            for (e = next; e; e = next) {
                next = e->next;
                vt_dev_event_free(e);
            }
            vt_device_free(dm->dev);
            dm->dev = NULL;
            return;
        }
        vt_dev_event_free(e);
    }
}

/* ---- socket, signals, timer -------------------------------------------- */

static void vt__on_connection(uv_stream_t *s, int status)
{
    vt_daemon *dm = s->data;
    if (status < 0) {
        vt_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    vt_conn_accept(dm);
}

/* Whether something answers on a Unix socket path. */
static int vt__socket_alive(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), alive;
    if (fd < 0)
        return 0;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    alive = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return alive;
}

/* Puts the path of the socket systemd passed in cfg.socket, which the log
 * then names: the one the socket unit listens on, not the --socket default
 * (for the service's user, /tmp/vggtune-UID.sock) that it replaces. */
static void vt__name_passed_socket(vt_daemon *dm)
{
    size_t len = sizeof dm->cfg.socket - 1; /* (libuv does not terminate it) */
    if (uv_pipe_getsockname(&dm->listener, dm->cfg.socket, &len) < 0 || len == 0 ||
        dm->cfg.socket[0] == '\0')
        len = (size_t)snprintf(dm->cfg.socket, sizeof dm->cfg.socket, "(unnamed)");
    dm->cfg.socket[len] = '\0';
}

static int vt__listen(vt_daemon *dm)
{
    int fd, rc;
    char dir[PATH_MAX], *slash;

    if ((rc = vt_notify_listen_fd(&fd)) < 0)
        return rc;
    if (fd >= 0) {
        if ((rc = uv_pipe_open(&dm->listener, fd)) < 0)
            return vt_error_set(VT_EIO, "cannot use the socket passed by systemd: %s",
                                uv_strerror(rc));
        vt__name_passed_socket(dm);
        vt_log_info("using the socket passed by systemd, %s", dm->cfg.socket);
    } else {
        if (strlen(dm->cfg.socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return vt_error_set(VT_EINVAL, "socket path too long: %s", dm->cfg.socket);
        snprintf(dir, sizeof dir, "%s", dm->cfg.socket);
        /* its folder is made if missing (/run/vggtune), but not a whole
         * path: a mistyped --socket is an error, not a tree of folders */
        if ((slash = strrchr(dir, '/')) && slash != dir) {
            *slash = '\0';
            struct stat ds;
            if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return vt_error_set(VT_EIO, "cannot make the socket's folder %s: %s", dir,
                                    strerror(errno));
            if (stat(dir, &ds) < 0 || !S_ISDIR(ds.st_mode))
                return vt_error_set(VT_EIO, "the socket's folder %s is not a directory", dir);
        }
        struct stat st;
        if (lstat(dm->cfg.socket, &st) == 0) {
            /* Someone else's file at our path (/tmp/vggtune-UID.sock made
             * first by another user): not ours to serve or to remove. */
            if (geteuid() != 0 && st.st_uid != geteuid())
                return vt_error_set(VT_EPERM, "%s belongs to uid %u, not to this user; give "
                                    "another --socket", dm->cfg.socket, (unsigned)st.st_uid);
            /* a file that is not a socket is not a stale socket of ours */
            if (!S_ISSOCK(st.st_mode))
                return vt_error_set(VT_EINVAL, "%s exists and is not a socket; give another "
                                    "--socket", dm->cfg.socket);
            if (vt__socket_alive(dm->cfg.socket))
                return vt_error_set(VT_EBUSY, "another vggtuned is already serving %s",
                                    dm->cfg.socket);
            unlink(dm->cfg.socket); /* stale, left by a crash */
        }
        mode_t old = umask(0177); /* no window where the socket is open to all */
        rc = uv_pipe_bind(&dm->listener, dm->cfg.socket);
        umask(old);
        if (rc < 0)
            return vt_error_set(VT_EIO, "cannot bind %s: %s", dm->cfg.socket, uv_strerror(rc));
        dm->bound = 1;
        if (dm->cfg.socket_group[0]) {
            struct group gr, *res = NULL;
            char buf[4096];
            if (getgrnam_r(dm->cfg.socket_group, &gr, buf, sizeof buf, &res) != 0 || !res)
                return vt_error_set(VT_EINVAL, "socket-group: no group '%s'",
                                    dm->cfg.socket_group);
            if (chown(dm->cfg.socket, (uid_t)-1, gr.gr_gid) < 0)
                return vt_error_set(VT_EPERM, "cannot give %s to group %s: %s", dm->cfg.socket,
                                    dm->cfg.socket_group, strerror(errno));
        }
        if (chmod(dm->cfg.socket, (mode_t)dm->cfg.socket_mode) < 0)
            return vt_error_set(VT_EIO, "cannot chmod %s: %s", dm->cfg.socket, strerror(errno));
    }
    if ((rc = uv_listen((uv_stream_t *)&dm->listener, 128, vt__on_connection)) < 0)
        return vt_error_set(VT_EIO, "cannot listen on %s: %s", dm->cfg.socket,
                            uv_strerror(rc));
    dm->listening = 1;
    return 0;
}

static void vt__begin_stop(vt_daemon *dm)
{
    if (dm->stopping)
        return;
    dm->stopping = 1;
    vt_notify_stopping();
    if (dm->ready)
        vt_log_info("stopping: running jobs are checkpointed and resume on the next start");
    else
        vt_log_info("stopping before the device was ready");
    if (dm->listening) {
        uv_close((uv_handle_t *)&dm->listener, NULL);
        dm->listening = 0;
    }
    if (dm->bound) {
        unlink(dm->cfg.socket);
        dm->bound = 0;
    }
    if (dm->dev)
        vt_device_stop(dm->dev);
}

static void vt__on_signal(uv_signal_t *h, int sig)
{
    vt_daemon *dm = h->data;
    if (sig == SIGHUP) { /* a closed terminal or a reload request: not a stop */
        vt_log_warn("received SIGHUP: vggtuned does not reload; settings take effect "
                    "when it is restarted (running jobs resume from their checkpoints)");
        return;
    }
    vt_log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    vt__begin_stop(dm);
}

static void vt__on_timer(uv_timer_t *t)
{
    vt_daemon *dm = t->data;
    vt_conn_sweep(dm);
    vt__resave_all(dm);
    /* Only vouch for the daemon while the device thread shows life. */
    if (dm->watchdog_usec && dm->dev &&
        vt_device_idle_seconds(dm->dev) < dm->watchdog_usec / 1e6)
        vt_notify_watchdog();
    vt__status_line(dm);
}

/* ---- main -------------------------------------------------------------- */

/* Makes sure the state directory is the daemon's alone: owned by its
 * effective uid (else VT_EPERM, before anything is read or written there)
 * and mode 0700.  Whoever owns the directory can replace jobs.db and the
 * checkpoints in it, and a job read from there runs with the file access
 * of the uid its row names, root included. */
static int vt__own_state_dir(vt_daemon *dm)
{
    struct stat st;
    if (stat(dm->cfg.state_dir, &st) < 0)
        return vt_error_set(VT_EIO, "state directory %s: %s", dm->cfg.state_dir,
                            strerror(errno));
    if (st.st_uid != geteuid())
        return vt_error_set(VT_EPERM, "the state directory %s belongs to uid %u, not to "
                            "vggtuned's uid %u: its owner could change the jobs it runs, "
                            "as any user; give it to uid %u (chown -R) or use another "
                            "--state-dir", dm->cfg.state_dir, (unsigned)st.st_uid,
                            (unsigned)geteuid(), (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0700 && chmod(dm->cfg.state_dir, 0700) < 0)
        return vt_error_set(VT_EIO, "cannot make the state directory %s private (mode 0700): "
                            "%s", dm->cfg.state_dir, strerror(errno));
    return 0;
}

/* Takes STATE_DIR/lock for the life of the process: two daemons on one
 * state directory would both resume its jobs into the same files. */
static int vt__lock_state(vt_daemon *dm)
{
    char path[PATH_MAX];
    int rc;
    if ((rc = vt_path(path, sizeof path, "%s/lock", dm->cfg.state_dir)) < 0)
        return rc;
    dm->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (dm->lock_fd < 0)
        return vt_error_set(VT_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(dm->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(dm->lock_fd);
        dm->lock_fd = -1;
        if (e == EWOULDBLOCK)
            return vt_error_set(VT_EBUSY, "another vggtuned uses the state directory %s",
                                dm->cfg.state_dir);
        return vt_error_set(VT_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    return 0;
}

/* Descriptors kept from client connections: the store (database, WAL,
 * shared memory), the lock, the loop's and the backend's own, and what jobs
 * open while they run (an output or checkpoint being written, predict and
 * eval images), plus VT__FD_PER_THREAD per decode thread (its image),
 * stand-ins the pool may start beside stuck ones included (pool.h).
 * Without a reserve, clients holding the last descriptor make a running
 * job skip every image it decodes as unreadable and then fail on its next
 * output file. */
#define VT__FD_RESERVE 32
#define VT__FD_PER_THREAD 2

/* Fits max-clients under RLIMIT_NOFILE with the reserve above: raises the
 * soft limit as far as the hard one allows, else lowers max-clients (and
 * says so); VT_EINVAL when the limit leaves no room for a single client. */
static int vt__fit_fd_limit(vt_daemon *dm)
{
    struct rlimit rl;
    long threads = dm->cfg.threads > 0 ? dm->cfg.threads : sysconf(_SC_NPROCESSORS_ONLN);
    unsigned long long reserve = VT__FD_RESERVE + VT__FD_PER_THREAD *
                                 ((unsigned long long)(threads > 0 ? threads : 1) +
                                  VT_POOL_STANDINS_MAX);
    unsigned long long want = reserve + (unsigned long long)dm->cfg.max_clients, have;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur >= want)
        return 0;
    if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > rl.rlim_cur) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    have = rl.rlim_cur;
    if (have >= want)
        return 0;
    if (have <= reserve)
        return vt_error_set(VT_EINVAL, "the open-file limit (%llu) is too low: vggtuned keeps "
                            "%llu descriptors for its store and jobs, and needs one more per "
                            "client; raise it (LimitNOFILE=, ulimit -n) to at least %llu for "
                            "max-clients %d", have, reserve, want, dm->cfg.max_clients);
    vt_log_warn("the open-file limit (%llu) leaves room for %llu clients at once, not "
                "max-clients %d (vggtuned keeps %llu descriptors for its store and jobs); "
                "raise it (LimitNOFILE=, ulimit -n) to %llu", have, have - reserve,
                dm->cfg.max_clients, reserve, want);
    dm->cfg.max_clients = (int)(have - reserve);
    return 0;
}

static int vt__setup(vt_daemon *dm)
{
    char path[PATH_MAX];
    int rc, n;

    /* The loop's handles first: whatever fails below, stopping closes them
     * (vt__close_handles), and a signal already stops a slow start. */
    uv_pipe_init(dm->loop, &dm->listener, 0);
    uv_signal_init(dm->loop, &dm->sigterm);
    uv_signal_init(dm->loop, &dm->sigint);
    uv_signal_init(dm->loop, &dm->sighup);
    uv_timer_init(dm->loop, &dm->timer);
    dm->listener.data = dm->sigterm.data = dm->sigint.data = dm->sighup.data = dm;
    dm->timer.data = dm;
    uv_signal_start(&dm->sigterm, vt__on_signal, SIGTERM);
    uv_signal_start(&dm->sigint, vt__on_signal, SIGINT);
    uv_signal_start(&dm->sighup, vt__on_signal, SIGHUP);

    if ((rc = vt__fit_fd_limit(dm)) < 0)
        return rc;
    if ((rc = vt_mkdir_p(dm->cfg.state_dir, NULL)) < 0)
        return vt_error_wrap(rc, "state directory");
    if ((rc = vt__own_state_dir(dm)) < 0)
        return rc;
    if ((rc = vt__lock_state(dm)) < 0)
        return rc;
    if ((rc = vt_path(path, sizeof path, "%s/checkpoints", dm->cfg.state_dir)) < 0 ||
        (rc = vt_mkdir_p(path, NULL)) < 0)
        return rc;
    /* Under the lock no other process writes there: a temporary file is a
     * checkpoint that a daemon killed while writing it left, as large as the
     * checkpoint, and nothing else would ever remove it. */
    if ((n = vt_atomic_sweep(path, NULL, 1, NULL, 0)) > 0)
        vt_log_warn("removed %d unfinished checkpoint file%s from %s, left by a daemon stopped "
                    "while writing %s", n, n == 1 ? "" : "s", path, n == 1 ? "it" : "them");
    if ((rc = vt_path(path, sizeof path, "%s/jobs.db", dm->cfg.state_dir)) < 0 ||
        (rc = vt_store_open(&dm->store, path)) < 0)
        return rc;
    if (dm->cfg.admin_group[0]) {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(dm->cfg.admin_group, &gr, buf, sizeof buf, &res) != 0 || !res)
            return vt_error_set(VT_EINVAL, "admin-group: no group '%s'", dm->cfg.admin_group);
        dm->admin_gid = gr.gr_gid;
        dm->has_admin_group = 1;
    }
    if ((rc = vt_device_start(&dm->dev, &dm->cfg, vt_store_id(dm->store), dm->loop,
                               vt__on_device, dm)) < 0)
        return rc;
    if ((rc = vt_store_each_job(dm->store, vt__load_job, dm)) < 0)
        return rc;
    if ((rc = vt__listen(dm)) < 0)
        return rc;
    dm->watchdog_usec = vt_notify_watchdog_usec();
    uv_timer_start(&dm->timer, vt__on_timer, 1000, 1000);
    return 0;
}

int vt_server_main(int argc, char **argv)
{
    vt_daemon dm;
    uv_loop_t loop;
    int rc;

    memset(&dm, 0, sizeof dm);
    dm.lock_fd = -1;
    if ((rc = vt_config_load(&dm.cfg, argc, argv)) != 0) {
        if (rc > 0)
            return 0;
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        return 2;
    }
    vt_log_init("vggtuned", (vt_log_level)dm.cfg.log_level);
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&loop);
    dm.loop = &loop;
    dm.started = vt_clock_wall();
    if ((rc = vt__setup(&dm)) < 0) {
        vt_log_error("%s", vt_error_msg());
        dm.exit_code = 1;
        vt__begin_stop(&dm);
        if (!dm.dev) /* else the device thread's end closes them */
            vt__close_handles(&dm);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (dm.dev) { /* setup failed before the device thread could report */
        vt_device_stop(dm.dev);
        vt_device_free(dm.dev);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
    if (dm.store) { /* a last try for records still behind; else the log says which */
        vt__resave_all(&dm);
        for (vt_job *j = dm.jobs.head; j; j = j->next)
            if (j->unsaved)
                vt_log_error("job %lld: its last state (%s) could not be written to the "
                             "store", (long long)j->id, vt_job_state_name(j->state));
    }
    vt_store_close(dm.store);
    if (dm.lock_fd >= 0)
        close(dm.lock_fd);
    vt_jobs_clear(&dm.jobs);
    while (dm.subs) {
        vt_sub *s = dm.subs;
        dm.subs = s->next;
        cJSON_Delete(s->req_id);
        free(s);
    }
    free(dm.stats);
    vt_log_info("stopped");
    return dm.exit_code;
}

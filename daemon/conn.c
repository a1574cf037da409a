/* conn.c - accepting, reading, writing and closing connections (see conn.h). */
#include "conn.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/clock.h"
#include "../common/creds.h"
#include "../common/error.h"
#include "../common/log.h"
#include "ops.h"

typedef struct {
    uv_write_t req;
    char *data;
} vt__write;

typedef struct {
    uv_shutdown_t req;
    vt_conn *c;
} vt__shutdown;

static void vt__on_close(uv_handle_t *h)
{
    vt_conn *c = (vt_conn *)h;
    vt_daemon *dm = c->dm;
    for (vt_conn **p = &dm->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    dm->nconns--;
    vt_framer_free(&c->framer);
    free(c);
}

void vt_conn_close(vt_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    vt_daemon_unsubscribe_conn(c->dm, c->id);
    uv_close((uv_handle_t *)&c->pipe, vt__on_close);
}

static void vt__on_write(uv_write_t *req, int status)
{
    vt__write *w = (vt__write *)req;
    (void)status;
    free(w->data);
    free(w);
}

int vt_conn_send(vt_conn *c, char *line, int droppable)
{
    vt__write *w;
    uv_buf_t buf;
    size_t queued = c->pipe.write_queue_size;

    if (!line)
        return -1;
    if (c->closing) {
        free(line);
        return -1;
    }
    if (droppable && queued > VT_CONN_SOFT_LIMIT) {
        free(line);
        return 1;
    }
    if (queued > VT_CONN_HARD_LIMIT) {
        vt_log_warn("disconnecting %s (pid %d): it stopped reading (%zu bytes waiting)",
                    c->user, (int)c->pid, queued);
        free(line);
        vt_conn_close(c);
        return -1;
    }
    if (!(w = malloc(sizeof *w))) {
        free(line);
        return -1;
    }
    w->data = line;
    buf = uv_buf_init(line, (unsigned)strlen(line));
    if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, vt__on_write) < 0) {
        free(line);
        free(w);
        vt_conn_close(c);
        return -1;
    }
    return 0;
}

static void vt__on_shutdown(uv_shutdown_t *req, int status)
{
    vt__shutdown *s = (vt__shutdown *)req;
    (void)status;
    vt_conn_close(s->c);
    free(s);
}

void vt_conn_send_and_close(vt_conn *c, char *line)
{
    vt__shutdown *s;
    if (vt_conn_send(c, line, 0) < 0)
        return;
    uv_read_stop((uv_stream_t *)&c->pipe);
    if (!(s = malloc(sizeof *s)) ||
        uv_shutdown(&s->req, (uv_stream_t *)&c->pipe, vt__on_shutdown) < 0) {
        free(s);
        vt_conn_close(c);
        return;
    }
    s->c = c;
}

static void vt__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    hint = hint > 65536 ? 65536 : hint;
    buf->base = malloc(hint);
    buf->len = buf->base ? hint : 0;
}

static void vt__on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    vt_conn *c = (vt_conn *)s;
    char *line;
    size_t len;
    int rc = 0, fed;

    if (n < 0) {
        free(buf->base);
        vt_conn_close(c); /* EOF or error: the client went away */
        return;
    }
    fed = vt_framer_feed(&c->framer, buf->base, (size_t)n);
    free(buf->base);
    while (!c->closing && (rc = vt_framer_next(&c->framer, &line, &len)) > 0) {
        if (len > 0)
            vt_ops_dispatch(c, line, len);
        free(line);
    }
    if (fed < 0 && rc >= 0)
        rc = fed;
    if (rc == VT_ETOOBIG && !c->closing) {
        char msg[128];
        snprintf(msg, sizeof msg, "frame longer than %zu bytes; closing the connection",
                 VT_PROTO_MAX_FRAME);
        vt_conn_send_and_close(c, vt_proto_error(NULL, VT_ETOOBIG, msg));
    } else if (rc < 0 && !c->closing) {
        vt_conn_close(c);
    }
}

/* Root, or a member of the configured admin group. */
static int vt__is_admin(vt_daemon *dm, uid_t uid, gid_t gid)
{
    vt_creds cr;
    if (uid == 0)
        return 1;
    if (!dm->has_admin_group)
        return 0;
    vt_creds_for_user(&cr, uid, gid);
    for (int i = 0; i < cr.ngroups; i++)
        if (cr.groups[i] == dm->admin_gid)
            return 1;
    return 0;
}

/* Open connections of uid, the new one included. */
static int vt__user_conns(const vt_daemon *dm, uid_t uid)
{
    int n = 0;
    for (const vt_conn *c = dm->conns; c; c = c->next)
        n += c->uid == uid && !c->closing;
    return n;
}

/* Refuses a connection just accepted: the error is written now, if the
 * socket takes it at once (a new one does), and the descriptor is closed
 * before returning.  A burst of connections over the limit then never holds
 * more descriptors than the limit allows, which keeps the ones the server
 * keeps for jobs (server.c, vt__fit_fd_limit) free; an orderly shutdown
 * would hold each until a later turn of the loop. */
static void vt__refuse(vt_conn *c, const char *msg)
{
    char *line = vt_proto_error(NULL, VT_EBUSY, msg);
    if (line) {
        uv_buf_t buf = uv_buf_init(line, (unsigned)strlen(line));
        uv_try_write((uv_stream_t *)&c->pipe, &buf, 1);
        free(line);
    }
    vt_conn_close(c);
}

void vt_conn_accept(vt_daemon *dm)
{
    vt_conn *c = calloc(1, sizeof *c);
    struct ucred cred;
    socklen_t len = sizeof cred;
    uv_os_fd_t fd;

    if (!c)
        return;
    uv_pipe_init(dm->loop, &c->pipe, 0);
    c->dm = dm;
    c->id = ++dm->next_conn;
    c->connected = vt_clock_wall();
    vt_framer_init(&c->framer, VT_PROTO_MAX_FRAME);
    c->next = dm->conns;
    dm->conns = c;
    dm->nconns++;
    if (uv_accept((uv_stream_t *)&dm->listener, (uv_stream_t *)&c->pipe) < 0 ||
        uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        vt_conn_close(c);
        return;
    }
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->pid = cred.pid;
    vt_user_name(c->uid, c->user, sizeof c->user);
    c->admin = vt__is_admin(dm, c->uid, c->gid);
    if (dm->nconns > dm->cfg.max_clients) {
        vt__refuse(c, "too many connections; try again later");
        return;
    }
    if (c->uid != 0 && vt__user_conns(dm, c->uid) > dm->cfg.max_clients_user) {
        char msg[160];
        snprintf(msg, sizeof msg, "too many connections of user %s (at most %d at once); "
                 "close some and try again", c->user, dm->cfg.max_clients_user);
        vt_log_debug("refused a connection of %s: %d already open (the limit)", c->user,
                     dm->cfg.max_clients_user);
        vt__refuse(c, msg);
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, vt__alloc, vt__on_read);
}

vt_conn *vt_conn_find(vt_daemon *dm, uint64_t id)
{
    for (vt_conn *c = dm->conns; c; c = c->next)
        if (c->id == id && !c->closing)
            return c;
    return NULL;
}

void vt_conn_sweep(vt_daemon *dm)
{
    double now = vt_clock_wall();
    char why[64];
    snprintf(why, sizeof why, "no hello within %.0f seconds", VT_CONN_HELLO_TIMEOUT);
    for (vt_conn *c = dm->conns; c; c = c->next)
        if (!c->hello && !c->closing && now - c->connected > VT_CONN_HELLO_TIMEOUT)
            vt_conn_send_and_close(c, vt_proto_error(NULL, VT_EPROTO, why));
}

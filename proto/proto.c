/* proto.c - framing, request parsing, message builders and the blocking
 * client connection (see proto.h; the wire format is in PROTOCOL.md).
 *
 * The framer and builders are pure and shared by the daemon and the client.
 * The client half is deliberately simple: one blocking socket, one
 * outstanding request at a time, messages that arrive for other ids (the
 * events of a watch) kept in a queue for vt_client_read, and poll() for
 * timeouts.  It never raises SIGPIPE (MSG_NOSIGNAL), survives EINTR, and
 * turns every connection failure into a message that says what to do.
 */
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../common/clock.h"
#include "../common/error.h"
#include "../common/utf8.h"

/* 2^53: integers (ids, job numbers) must be smaller in magnitude.  From
 * 2^53 on, a double no longer holds every integer, so 2^53 + 1 reads as
 * 2^53 and 2^53 itself cannot be told from its neighbour. */
#define VT__MAX_EXACT 9007199254740992.0
/* Messages from the daemon may be longer than its request limit (a list of
 * many jobs); the client accepts up to this. */
#define VT__CLIENT_MAX_IN ((size_t)64 << 20)
/* A daemon that accepts but does not answer hello within this is stuck. */
#define VT__HELLO_TIMEOUT_MS 10000
/* A daemon that stops reading our requests for this long is stuck. */
#define VT__SEND_TIMEOUT_S 30

/* ---- framing ----------------------------------------------------------- */

void vt_framer_init(vt_framer *f, size_t max)
{
    memset(f, 0, sizeof *f);
    f->max = max ? max : VT_PROTO_MAX_FRAME;
}

void vt_framer_free(vt_framer *f)
{
    size_t max = f->max;
    free(f->buf);
    vt_framer_init(f, max);
}

int vt_framer_feed(vt_framer *f, const char *data, size_t n)
{
    const char *p = data, *end = data + n, *nl;
    size_t pending, whole = 0; /* data[0, whole) ends with a complete line */
    int too_big = 0;

    if (f->too_big)
        return vt_error_set(VT_ETOOBIG, "message longer than %zu bytes", f->max);
    if (f->head) { /* drop what vt_framer_next took, once per feed */
        memmove(f->buf, f->buf + f->head, f->len - f->head);
        f->len -= f->head;
        f->tail -= f->head;
        f->head = 0;
    }
    pending = f->len - f->tail;
    /* Every line is checked as it completes, so a long run of short lines
     * is fine and one long line is refused however it is split. */
    for (; p < end; p = nl + 1) {
        if (!(nl = memchr(p, '\n', (size_t)(end - p)))) {
            /* Without its newline the line already has pending + rest bytes. */
            too_big = pending + (size_t)(end - p) >= f->max;
            break;
        }
        if (pending + (size_t)(nl - p) + 1 > f->max) {
            too_big = 1;
            break;
        }
        pending = 0;
        whole = (size_t)(nl + 1 - data);
    }
    if (too_big) {
        if (!whole)
            f->len = f->tail; /* the oversized line began in the buffer */
        n = whole;
    }
    if (f->len + n > f->cap) {
        size_t cap = f->cap ? f->cap : 4096;
        char *b;
        while (cap < f->len + n)
            cap *= 2;
        if (!(b = realloc(f->buf, cap)))
            return vt_error_set(VT_ENOMEM, "out of memory buffering %zu bytes", f->len + n);
        f->buf = b;
        f->cap = cap;
    }
    if (n)
        memcpy(f->buf + f->len, data, n);
    if (whole)
        f->tail = f->len + whole;
    f->len += n;
    if (too_big) {
        f->tail = f->len;
        f->too_big = 1;
        return vt_error_set(VT_ETOOBIG, "message longer than %zu bytes", f->max);
    }
    return 0;
}

static int vt__blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return 0;
    return 1;
}

int vt_framer_next(vt_framer *f, char **line, size_t *len)
{
    while (f->head < f->tail) {
        char *s = f->buf + f->head;
        char *nl = memchr(s, '\n', f->tail - f->head); /* [head, tail) is whole lines */
        size_t n = (size_t)(nl - s);
        char *out;

        if (n && s[n - 1] == '\r')
            n--;
        if (vt__blank(s, n)) {
            f->head = (size_t)(nl + 1 - f->buf);
            continue;
        }
        if (!(out = malloc(n + 1)))
            return vt_error_set(VT_ENOMEM, "out of memory");
        memcpy(out, s, n);
        out[n] = '\0';
        f->head = (size_t)(nl + 1 - f->buf);
        *line = out;
        *len = n;
        return 1;
    }
    if (f->head == f->len)
        f->head = f->tail = f->len = 0;
    if (f->too_big)
        return vt_error_set(VT_ETOOBIG, "message longer than %zu bytes", f->max);
    return 0;
}

/* ---- requests ---------------------------------------------------------- */

static int vt__valid_id(const cJSON *v)
{
    if (cJSON_IsNumber(v))
        return isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
               fabs(v->valuedouble) < VT__MAX_EXACT;
    if (cJSON_IsString(v))
        return v->valuestring[0] && strlen(v->valuestring) <= VT_PROTO_MAX_ID;
    return 0;
}

/* Parses a whole line as one JSON value: trailing bytes (a second value, a
 * NUL) are an error, unlike cJSON_ParseWithLength. */
static cJSON *vt__parse_line(const char *line, size_t len, long *bad_at)
{
    const char *end = NULL;
    cJSON *r = cJSON_ParseWithLengthOpts(line, len, &end, 0);

    if (!r) {
        *bad_at = end && end >= line && end <= line + len ? (long)(end - line) : 0;
        return NULL;
    }
    while (end < line + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
        end++;
    if (end != line + len) {
        *bad_at = (long)(end - line);
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* Whether the line puts a NUL in a string, as a raw byte or as the escape
 * \u0000 (a backslash that is itself escaped, "\\u0000", does not count).
 * cJSON would store it and C would read the string cut short there. */
static int vt__has_nul(const char *line, size_t len)
{
    if (memchr(line, '\0', len))
        return 1;
    for (size_t i = 0; i + 6 <= len; i++) {
        size_t slashes = 0;
        if (memcmp(line + i, "\\u0000", 6) != 0)
            continue;
        while (slashes < i && line[i - 1 - slashes] == '\\')
            slashes++;
        if (slashes % 2 == 0)
            return 1;
    }
    return 0;
}

int vt_proto_parse(const char *line, size_t len, cJSON **root, const cJSON **id,
                   const char **op)
{
    const cJSON *v;
    long at = 0;

    *root = NULL;
    *id = NULL;
    *op = NULL;
    if (!(*root = vt__parse_line(line, len, &at)))
        return vt_error_set(VT_EPROTO, "invalid JSON (near byte %ld)", at);
    if (!cJSON_IsObject(*root))
        return vt_error_set(VT_EPROTO, "a request must be a JSON object");
    v = cJSON_GetObjectItemCaseSensitive(*root, "id");
    if (!v)
        return vt_error_set(VT_EPROTO, "the request has no id");
    if (!vt__valid_id(v))
        return vt_error_set(VT_EPROTO, "id must be an integer or a string of 1 to %d bytes",
                            VT_PROTO_MAX_ID);
    *id = v;
    v = cJSON_GetObjectItemCaseSensitive(*root, "op");
    if (!v)
        return vt_error_set(VT_EPROTO, "the request has no op");
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return vt_error_set(VT_EPROTO, "op must be a non-empty string");
    *op = v->valuestring;
    if (vt__has_nul(line, len)) {
        if (cJSON_IsString(*id))
            *id = NULL; /* the NUL may be in it: it would be echoed changed */
        return vt_error_set(VT_EINVAL, "strings must not contain NUL (\\u0000)");
    }
    return 0;
}

/* The field's value, or NULL when it is absent or null. */
static const cJSON *vt__field(const cJSON *obj, const char *field)
{
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, field) : NULL;
    return v && !cJSON_IsNull(v) ? v : NULL;
}

int vt_proto_get_int(const cJSON *obj, const char *field, int required, int64_t *out)
{
    const cJSON *v = vt__field(obj, field);
    if (!v)
        return required ? vt_error_set(VT_EINVAL, "%s is required (an integer)", field) : 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) >= VT__MAX_EXACT)
        return vt_error_set(VT_EINVAL, "%s must be an integer", field);
    *out = (int64_t)v->valuedouble;
    return 0;
}

int vt_proto_get_str(const cJSON *obj, const char *field, int required, const char **out)
{
    const cJSON *v = vt__field(obj, field);
    if (!v)
        return required ? vt_error_set(VT_EINVAL, "%s is required (a string)", field) : 0;
    if (!cJSON_IsString(v))
        return vt_error_set(VT_EINVAL, "%s must be a string", field);
    *out = v->valuestring;
    return 0;
}

int vt_proto_get_bool(const cJSON *obj, const char *field, int required, int *out)
{
    const cJSON *v = vt__field(obj, field);
    if (!v)
        return required ? vt_error_set(VT_EINVAL, "%s is required (true or false)", field)
                        : 0;
    if (!cJSON_IsBool(v))
        return vt_error_set(VT_EINVAL, "%s must be true or false", field);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* ---- replies ----------------------------------------------------------- */

/* Moves body's fields into dst, dropping those named skip1/skip2 (the
 * reply's own "id" and "ok"/"event" come first and are not repeated). */
static int vt__move_fields(cJSON *dst, cJSON *body, const char *skip1, const char *skip2)
{
    int ok = 1;
    if (!cJSON_IsObject(body)) {
        cJSON_Delete(body);
        return 1;
    }
    while (body->child) {
        cJSON *item = cJSON_DetachItemViaPointer(body, body->child);
        if (!item->string || strcmp(item->string, skip1) == 0 ||
            (skip2 && strcmp(item->string, skip2) == 0))
            cJSON_Delete(item);
        else if (!cJSON_AddItemToObject(dst, item->string, item)) {
            cJSON_Delete(item);
            ok = 0;
        }
    }
    cJSON_Delete(body);
    return ok;
}

/* A new object holding only "id" (a copy of id, or null). */
static cJSON *vt__with_id(const cJSON *id)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *i;
    char num[32];
    /* An integer id goes back digit for digit: cJSON's own printing takes
     * 15 significant digits when they round-trip within its tolerance,
     * which turned 2^53 into 9.00719925474099e+15. */
    if (cJSON_IsNumber(id) && vt__valid_id(id)) {
        snprintf(num, sizeof num, "%.0f", id->valuedouble);
        i = cJSON_CreateRaw(num);
    } else {
        i = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull();
    }
    if (!o || !cJSON_AddItemToObject(o, "id", i)) {
        cJSON_Delete(o);
        cJSON_Delete(i);
        return NULL;
    }
    return o;
}

/* Prints o (consumed) as one line ending in '\n'. */
static char *vt__line(cJSON *o)
{
    char *s = o ? cJSON_PrintUnformatted(o) : NULL, *t;
    size_t n;
    cJSON_Delete(o);
    if (!s)
        return NULL;
    n = strlen(s);
    if (!(t = realloc(s, n + 2))) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

/* A line the daemon sends: valid UTF-8 whatever came in (names and paths
 * that arrived as raw bytes are echoed with '?'). */
static char *vt__reply_line(cJSON *o)
{
    char *t = vt__line(o);
    if (t)
        vt_utf8_scrub(t);
    return t;
}

char *vt_proto_ok(const cJSON *id, cJSON *body)
{
    cJSON *o = vt__with_id(id);
    if (!o || !cJSON_AddBoolToObject(o, "ok", 1)) {
        cJSON_Delete(o);
        cJSON_Delete(body);
        return NULL;
    }
    if (!vt__move_fields(o, body, "id", "ok")) {
        cJSON_Delete(o);
        return NULL;
    }
    return vt__reply_line(o);
}

char *vt_proto_error(const cJSON *id, int code, const char *message)
{
    cJSON *o = vt__with_id(id), *e = NULL;
    if (!o || !cJSON_AddBoolToObject(o, "ok", 0) ||
        !(e = cJSON_AddObjectToObject(o, "error")) ||
        !cJSON_AddStringToObject(e, "code", vt_error_name(code)) ||
        !cJSON_AddStringToObject(e, "message",
                                 message && *message ? message : vt_error_desc(code))) {
        cJSON_Delete(o);
        return NULL;
    }
    return vt__reply_line(o);
}

char *vt_proto_event(const cJSON *id, const char *event, cJSON *body)
{
    cJSON *o = vt__with_id(id);
    if (!o || !cJSON_AddStringToObject(o, "event", event)) {
        cJSON_Delete(o);
        cJSON_Delete(body);
        return NULL;
    }
    if (!vt__move_fields(o, body, "id", "event")) {
        cJSON_Delete(o);
        return NULL;
    }
    return vt__reply_line(o);
}

/* ---- client side ------------------------------------------------------- */

struct vt_client {
    int fd;
    int closed;          /* the daemon closed the connection (or broke it) */
    int64_t next_id;
    size_t max_frame;    /* the daemon's limit on our requests */
    vt_framer in;
    cJSON *queue;        /* array: messages read while waiting for a reply */
    int slow_ms;         /* vt_client_on_slow: after this long without a reply, */
    void (*on_slow)(void *ud, const cJSON *what); /* ... this is called once */
    void *slow_ud;
    void (*on_event)(void *ud, const cJSON *msg); /* vt_client_on_event */
    void *event_ud;
    int printable;       /* vt_client_printable */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

const char *vt_proto_default_socket(char *buf, size_t len)
{
    const char *env = getenv("VGGTUNE_SOCKET");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;

    if (env && *env) {
        snprintf(buf, len, "%s", env);
        return buf;
    }
    if (xdg && *xdg) {
        snprintf(buf, len, "%s/vggtune.sock", xdg);
        if (lstat(buf, &st) == 0)
            return buf;
    }
    /* A user's daemon without $XDG_RUNTIME_DIR.  /tmp is shared: only a
     * socket this user owns is theirs (anyone could have made one there). */
    snprintf(buf, len, "/tmp/vggtune-%u.sock", (unsigned)geteuid());
    if (lstat(buf, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_uid == geteuid())
        return buf;
    snprintf(buf, len, "/run/vggtune/vggtune.sock");
    return buf;
}

static int64_t vt__now_ms(void) { return (int64_t)(vt_clock_mono() * 1e3); }

/* connect(2) that survives EINTR: an interrupted connect may complete in
 * the background, so the retry can answer EALREADY (wait for it) or EISCONN
 * (done).  Returns 0 or -errno. */
static int vt__connect(int fd, const struct sockaddr_un *sa)
{
    for (;;) {
        if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EISCONN)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EALREADY && errno != EINPROGRESS)
            return -errno;
        for (;;) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = 0;
            socklen_t n = sizeof err;
            if (poll(&p, 1, -1) < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &n) < 0)
                return -errno;
            return -err;
        }
    }
}

void vt_proto_denied_msg(char *buf, size_t len, const char *path, const struct stat *st,
                       const char *owner, const char *group, int in_group, int listed)
{
    char g[64], o[64];

    if (!st) {
        snprintf(buf, len, "permission denied on %s: a folder on the way to it is closed to "
                 "you (ask an administrator)", path);
        return;
    }
    if (group)
        snprintf(g, sizeof g, "%s", group);
    else
        snprintf(g, sizeof g, "%u", (unsigned)st->st_gid);
    if (owner)
        snprintf(o, sizeof o, "%s", owner);
    else
        snprintf(o, sizeof o, "uid %u", (unsigned)st->st_uid);
    if (in_group && (st->st_mode & S_IWGRP))
        snprintf(buf, len, "permission denied on %s: you are in its group '%s' and its mode "
                 "(%04o) lets the group connect; a folder on the way to it is closed to you "
                 "(ask an administrator)", path, g, (unsigned)(st->st_mode & 07777));
    else if (in_group && st->st_uid == 0)
        snprintf(buf, len, "permission denied on %s: you are in its group '%s', but its mode "
                 "(%04o) does not let the group connect; ask an administrator", path, g,
                 (unsigned)(st->st_mode & 07777));
    else if (in_group)
        snprintf(buf, len, "permission denied on %s: you are in its group '%s', but its mode "
                 "(%04o) does not let the group connect; it is %s's socket: ask them or an "
                 "administrator", path, g, (unsigned)(st->st_mode & 07777), o);
    else if (listed)
        snprintf(buf, len, "permission denied on %s: you were added to its group '%s' "
                 "after this session began: log in again (or run 'newgrp %s')", path, g, g);
    else if (st->st_gid == 0)
        snprintf(buf, len, "permission denied on %s: its group is root, not a group of "
                 "vggtuned's users; ask an administrator to start vggtuned with --socket-group "
                 "naming one, and to add you to it", path);
    else
        snprintf(buf, len, "permission denied on %s: ask an administrator to add you to the "
                 "'%s' group", path, g);
}

/* Whether the user database puts the user (euid) in group gid, as a new
 * login would give it. */
static int vt__listed_in(gid_t gid)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    gid_t groups[256];
    int n = (int)(sizeof groups / sizeof groups[0]);

    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res) != 0 || !res)
        return 0;
    if (pw.pw_gid == gid)
        return 1;
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
        return 0; /* more than we look at: say nothing we cannot tell */
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return 1;
    return 0;
}

/* Whether this process has group gid. */
static int vt__has_group(gid_t gid)
{
    int n = getgroups(0, NULL), yes = getegid() == gid;
    gid_t *groups = n > 0 ? calloc((size_t)n, sizeof *groups) : NULL;

    if (groups && (n = getgroups(n, groups)) > 0)
        for (int i = 0; i < n && !yes; i++)
            yes = groups[i] == gid;
    free(groups);
    return yes;
}

/* The EACCES message for the socket at path, from what this process sees
 * of it (vt_proto_denied_msg). */
static int vt__denied(const char *path)
{
    struct stat st;
    struct group gr, *gres = NULL;
    struct passwd pw, *pres = NULL;
    char gbuf[4096], pbuf[4096], msg[1024];
    int seen = stat(path, &st) == 0;

    if (seen) {
        (void)getgrgid_r(st.st_gid, &gr, gbuf, sizeof gbuf, &gres);
        (void)getpwuid_r(st.st_uid, &pw, pbuf, sizeof pbuf, &pres);
    }
    vt_proto_denied_msg(msg, sizeof msg, path, seen ? &st : NULL, pres ? pres->pw_name : NULL,
                        gres ? gres->gr_name : NULL, seen && vt__has_group(st.st_gid),
                        seen && vt__listed_in(st.st_gid));
    return vt_error_set(VT_EPERM, "%s", msg);
}

/* The message for a failed connect: what is wrong and what to do. */
static int vt__connect_error(const char *path, int err)
{
    static const char start[] = "start it with 'vggtuned', or the service with 'systemctl start vggtuned.socket'";
    struct stat st;

    switch (err) {
    case ENOENT:
        return vt_error_set(VT_ENOTFOUND, "vggtuned is not running: no socket at %s (%s)",
                            path, start);
    case ECONNREFUSED:
        if (stat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
            return vt_error_set(VT_ENOTFOUND, "%s is not a socket: give vggtuned's (--socket, "
                                "or $VGGTUNE_SOCKET)", path);
        return vt_error_set(VT_ENOTFOUND, "vggtuned is not running: nothing listens on %s "
                            "(a socket left by a stopped daemon; %s)", path, start);
    case EACCES:
    case EPERM:
        return vt__denied(path);
    case ENOTDIR:
    case ENOTSOCK:
        return vt_error_set(VT_EINVAL, "%s is not a socket path", path);
    default:
        return vt_error_set(VT_EIO, "cannot connect to vggtuned at %s: %s", path,
                            strerror(err));
    }
}

/* Writes all of buf.  SO_SNDTIMEO bounds the wait for a daemon that does
 * not read; MSG_NOSIGNAL keeps a closed connection from raising SIGPIPE. */
static int vt__send_all(vt_client *c, const char *buf, size_t n)
{
    while (n) {
        ssize_t w = send(c->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            c->closed = 1;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return vt_error_set(VT_EIO, "vggtuned did not read our request within %d s",
                                    VT__SEND_TIMEOUT_S);
            if (errno == EPIPE || errno == ECONNRESET)
                return vt_error_set(VT_EIO, "vggtuned closed the connection");
            return vt_error_set(VT_EIO, "sending to vggtuned: %s", strerror(errno));
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

void vt_client_printable(vt_client *c, int on) { c->printable = on; }

/* vt_utf8_scrub_controls on every string value in v. */
static void vt__scrub_controls(cJSON *v)
{
    cJSON *e;
    if (cJSON_IsString(v) && v->valuestring)
        vt_utf8_scrub_controls(v->valuestring);
    cJSON_ArrayForEach(e, v)
        vt__scrub_controls(e);
}

/* Reads the next message off the socket (not the queue) until deadline_ms
 * (< 0: none).  Returns 1, 0 on timeout, or VT_EIO / VT_EPROTO. */
static int vt__read_socket(vt_client *c, int64_t deadline_ms, cJSON **msg)
{
    char buf[16384];

    for (;;) {
        char *line = NULL;
        size_t len = 0;
        int rc = vt_framer_next(&c->in, &line, &len);
        if (rc == VT_ETOOBIG)
            return vt_error_set(VT_EPROTO, "vggtuned sent a message longer than %zu bytes",
                                c->in.max);
        if (rc < 0)
            return rc;
        if (rc > 0) {
            long at = 0;
            cJSON *m = vt__parse_line(line, len, &at);
            free(line);
            if (!cJSON_IsObject(m)) {
                cJSON_Delete(m);
                c->closed = 1;
                return vt_error_set(VT_EPROTO, "vggtuned sent a malformed message (is %s "
                                    "really vggtuned's socket?)", c->path);
            }
            if (c->printable)
                vt__scrub_controls(m);
            *msg = m;
            return 1;
        }
        if (c->closed)
            return vt_error_set(VT_EIO, "vggtuned closed the connection");

        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int wait = -1;
        if (deadline_ms >= 0) {
            int64_t left = deadline_ms - vt__now_ms();
            wait = left <= 0 ? 0 : left > 1000000000 ? 1000000000 : (int)left;
        }
        rc = poll(&p, 1, wait);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return vt_error_set(VT_EIO, "waiting for vggtuned: %s", strerror(errno));
        }
        if (rc == 0)
            return 0;
        ssize_t r = recv(c->fd, buf, sizeof buf, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            c->closed = 1; /* ECONNRESET and the like: what was framed is still read */
            continue;
        }
        if (r == 0) {
            c->closed = 1;
            continue;
        }
        if ((rc = vt_framer_feed(&c->in, buf, (size_t)r)) < 0) {
            c->closed = 1;
            if (rc != VT_ETOOBIG) /* too big: the messages before it come first */
                return rc;
        }
    }
}

/* Turns a reply into the request's result: 0 for "ok": true, the error
 * table's code (message set) for "ok": false. */
static int vt__reply_status(const cJSON *reply)
{
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(reply, "ok");
    const cJSON *err, *code, *message;
    int rc;

    if (cJSON_IsTrue(ok))
        return 0;
    if (!cJSON_IsFalse(ok))
        return vt_error_set(VT_EPROTO, "vggtuned sent a reply without \"ok\"");
    err = cJSON_GetObjectItemCaseSensitive(reply, "error");
    code = cJSON_GetObjectItemCaseSensitive(err, "code");
    message = cJSON_GetObjectItemCaseSensitive(err, "message");
    rc = cJSON_IsString(code) ? vt_error_from_name(code->valuestring) : 0;
    if (!rc) /* a code this client does not know: still a failure */
        rc = VT_EPROTO;
    if (cJSON_IsString(message) && message->valuestring[0])
        return vt_error_set(rc, "%s", message->valuestring);
    return vt_error_set(rc, "%s", vt_error_desc(rc));
}

/* Whether msg is the reply to request id: "ok" present and the same id, or
 * an error with a null id (the daemon could not read our request's id). */
static int vt__is_reply_to(const cJSON *msg, int64_t id)
{
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(msg, "ok");
    if (!cJSON_IsBool(ok))
        return 0;
    if (cJSON_IsNumber(mid))
        return mid->valuedouble == (double)id;
    return (!mid || cJSON_IsNull(mid)) && cJSON_IsFalse(ok);
}

/* Whether msg is an event of request id before its reply. */
static int vt__is_event_of(const cJSON *msg, int64_t id)
{
    const cJSON *mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
    return cJSON_IsNumber(mid) && mid->valuedouble == (double)id &&
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "event")) &&
           !cJSON_GetObjectItemCaseSensitive(msg, "ok");
}

/* Waits for the reply to id, handing its events to on_event (when set)
 * and queueing everything else.  Returns 1 and *reply, 0 on timeout, or
 * an error. */
static int vt__wait_reply(vt_client *c, int64_t id, int timeout_ms, cJSON **reply)
{
    int64_t deadline = timeout_ms < 0 ? -1 : vt__now_ms() + timeout_ms;
    for (;;) {
        cJSON *m = NULL;
        int rc = vt__read_socket(c, deadline, &m);
        if (rc <= 0)
            return rc;
        if (vt__is_reply_to(m, id)) {
            *reply = m;
            return 1;
        }
        if (c->on_event && vt__is_event_of(m, id)) {
            c->on_event(c->event_ud, m);
            cJSON_Delete(m);
            continue;
        }
        if (!c->queue && !(c->queue = cJSON_CreateArray())) {
            cJSON_Delete(m);
            return vt_error_set(VT_ENOMEM, "out of memory");
        }
        cJSON_AddItemToArray(c->queue, m);
    }
}

int vt_client_send(vt_client *c, cJSON *req, int64_t *id)
{
    cJSON *msg = NULL;
    char *text = NULL;
    size_t n;
    int rc;

    if (!req)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if (c->closed) {
        cJSON_Delete(req);
        return vt_error_set(VT_EIO, "vggtuned closed the connection");
    }
    /* "id" first: easier to read in a trace. */
    if (!(msg = cJSON_CreateObject()) ||
        !cJSON_AddNumberToObject(msg, "id", (double)c->next_id)) {
        cJSON_Delete(msg);
        cJSON_Delete(req);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (!vt__move_fields(msg, req, "id", "id")) {
        cJSON_Delete(msg);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (!(text = vt__line(msg)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    n = strlen(text);
    if (n > c->max_frame) {
        free(text);
        return vt_error_set(VT_ETOOBIG, "the request is %zu bytes, more than vggtuned accepts "
                            "(%zu)", n, c->max_frame);
    }
    rc = vt__send_all(c, text, n);
    free(text);
    if (rc < 0 && c->closed) {
        /* The daemon may have said why before closing (a connection limit):
         * that error, rather than the broken pipe. */
        cJSON *m = NULL;
        c->closed = 0;
        if (vt__read_socket(c, vt__now_ms() + 200, &m) == 1 &&
            cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "ok")))
            rc = vt__reply_status(m);
        cJSON_Delete(m);
        c->closed = 1;
    }
    if (rc < 0)
        return rc;
    if (id)
        *id = c->next_id;
    c->next_id++;
    return 0;
}

/* Sends req and waits up to timeout_ms for its reply. */
static int vt__request(vt_client *c, cJSON *req, int timeout_ms, cJSON **reply)
{
    cJSON *r = NULL;
    int64_t id;
    int rc;

    if (reply)
        *reply = NULL;
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(req, "op"));
    cJSON *what = c->on_slow && timeout_ms < 0 ? cJSON_CreateObject() : NULL;
    if (what && op)
        cJSON_AddStringToObject(what, "op", op);
    if ((rc = vt_client_send(c, req, &id)) < 0) {
        cJSON_Delete(what);
        return rc;
    }
    if (what) {
        rc = vt__wait_reply(c, id, c->slow_ms, &r);
        if (rc == 0) {
            c->on_slow(c->slow_ud, what);
            rc = vt__wait_reply(c, id, -1, &r);
        }
        cJSON_Delete(what);
    } else {
        rc = vt__wait_reply(c, id, timeout_ms, &r);
    }
    if (rc == 0)
        return vt_error_set(VT_EIO, "vggtuned did not answer within %d s", timeout_ms / 1000);
    if (rc < 0)
        return rc;
    rc = vt__reply_status(r);
    if (reply)
        *reply = r;
    else
        cJSON_Delete(r);
    return rc;
}

int vt_client_request(vt_client *c, cJSON *req, cJSON **reply)
{
    return vt__request(c, req, -1, reply);
}

void vt_client_on_slow(vt_client *c, int ms, void (*fn)(void *ud, const cJSON *req), void *ud)
{
    c->slow_ms = ms;
    c->on_slow = fn;
    c->slow_ud = ud;
}

void vt_client_on_event(vt_client *c, void (*fn)(void *ud, const cJSON *msg), void *ud)
{
    c->on_event = fn;
    c->event_ud = ud;
}

int vt_client_read(vt_client *c, int timeout_ms, cJSON **msg)
{
    if (cJSON_GetArraySize(c->queue) > 0) {
        *msg = cJSON_DetachItemFromArray(c->queue, 0);
        return 1;
    }
    return vt__read_socket(c, timeout_ms < 0 ? -1 : vt__now_ms() + timeout_ms, msg);
}

int vt_client_fd(const vt_client *c) { return c->fd; }

void vt_client_close(vt_client *c)
{
    if (!c)
        return;
    if (c->fd >= 0)
        close(c->fd);
    vt_framer_free(&c->in);
    cJSON_Delete(c->queue);
    free(c);
}

/* Checks the hello reply: protocol version, the daemon's frame limit. */
static int vt__check_hello(vt_client *c, const cJSON *reply)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(reply, "version");
    const cJSON *mf = cJSON_GetObjectItemCaseSensitive(reply, "max_frame");

    if (!cJSON_IsNumber(v))
        return vt_error_set(VT_EPROTO, "the hello reply from %s has no version (is it "
                            "vggtuned's socket?)", c->path);
    if (v->valuedouble != VT_PROTO_VERSION)
        return vt_error_set(VT_EPROTO, "vggtuned speaks protocol version %g and this vggtune "
                            "version %d: install matching versions of the two",
                            v->valuedouble, VT_PROTO_VERSION);
    if (cJSON_IsNumber(mf) && mf->valuedouble >= 1024 && mf->valuedouble <= 1e12)
        c->max_frame = (size_t)mf->valuedouble;
    return 0;
}

int vt_client_connect(vt_client **out, const char *path, cJSON **hello)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_sec = VT__SEND_TIMEOUT_S};
    vt_client *c = NULL;
    cJSON *req = NULL, *reply = NULL;
    int rc;

    *out = NULL;
    if (hello)
        *hello = NULL;
    if (strlen(path) >= sizeof sa.sun_path)
        return vt_error_set(VT_EINVAL, "socket path too long (at most %zu bytes): %s",
                            sizeof sa.sun_path - 1, path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (!(c = calloc(1, sizeof *c)))
        return vt_error_set(VT_ENOMEM, "out of memory");
    c->next_id = 1;
    c->max_frame = VT_PROTO_MAX_FRAME;
    vt_framer_init(&c->in, VT__CLIENT_MAX_IN);
    snprintf(c->path, sizeof c->path, "%s", path);
    if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
        rc = vt_error_set(VT_EIO, "socket: %s", strerror(errno));
        goto fail;
    }
    /* Bounded sends: a stuck daemon must not hang the client forever. */
    (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if ((rc = vt__connect(c->fd, &sa)) < 0) {
        rc = vt__connect_error(path, -rc);
        goto fail;
    }
    if (!(req = cJSON_CreateObject()) || !cJSON_AddStringToObject(req, "op", "hello") ||
        !cJSON_AddNumberToObject(req, "version", VT_PROTO_VERSION) ||
        !cJSON_AddStringToObject(req, "client", "vggtune " VT_VERSION)) {
        cJSON_Delete(req);
        rc = vt_error_set(VT_ENOMEM, "out of memory");
        goto fail;
    }
    rc = vt__request(c, req, VT__HELLO_TIMEOUT_MS, &reply);
    if (rc < 0) {
        if (reply)
            rc = vt_error_wrap(rc, "vggtuned refused the handshake");
        else
            rc = vt_error_wrap(rc, "no handshake with vggtuned at %s", path);
        goto fail;
    }
    if ((rc = vt__check_hello(c, reply)) < 0)
        goto fail;
    if (hello)
        *hello = reply;
    else
        cJSON_Delete(reply);
    *out = c;
    return 0;
fail:
    cJSON_Delete(reply);
    vt_client_close(c);
    return rc;
}

/* fake_vggtuned.c - the scripted daemon stand-in (see fake_vggtuned.h). */
#include "fake_vggtuned.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void *fake__serve(void *arg)
{
    fake_daemon *d = arg;
    for (int k = 0; k < d->nconn; k++) {
        int fd = accept4(d->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break; /* fake_stop shut the socket down */
        }
        vt_framer_init(&d->in, VT_PROTO_MAX_FRAME);
        d->script(d, fd);
        vt_framer_free(&d->in);
        close(fd);
    }
    return NULL;
}

int fake_start(fake_daemon **out, const char *dir, fake_script script, void *ud, int nconn)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    fake_daemon *d = calloc(1, sizeof *d);

    *out = NULL;
    if (!d)
        return -1;
    snprintf(d->path, sizeof d->path, "%s/fake.sock", dir);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d->path);
    d->script = script;
    d->ud = ud;
    d->nconn = nconn;
    d->log = cJSON_CreateArray();
    if ((d->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        bind(d->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(d->lfd, 4) < 0 ||
        pthread_create(&d->thread, NULL, fake__serve, d) != 0) {
        perror("fake_start");
        if (d->lfd >= 0)
            close(d->lfd);
        cJSON_Delete(d->log);
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

void fake_join(fake_daemon *d)
{
    if (d->joined)
        return;
    shutdown(d->lfd, SHUT_RDWR); /* wakes accept() */
    pthread_join(d->thread, NULL);
    d->joined = 1;
}

void fake_stop(fake_daemon *d)
{
    if (!d)
        return;
    fake_join(d);
    close(d->lfd);
    unlink(d->path);
    cJSON_Delete(d->log);
    free(d);
}

const cJSON *fake_recv(fake_daemon *d, int fd)
{
    char buf[4096];
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        int rc = vt_framer_next(&d->in, &line, &len);
        if (rc < 0)
            return NULL;
        if (rc > 0) {
            cJSON *req = cJSON_ParseWithLength(line, len);
            free(line);
            if (!req)
                return NULL;
            cJSON_AddItemToArray(d->log, req);
            return req;
        }
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || vt_framer_feed(&d->in, buf, (size_t)r) < 0)
            return NULL;
    }
}

void fake_send_raw(int fd, const char *text)
{
    size_t n = strlen(text);
    while (n) {
        ssize_t w = send(fd, text, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        text += w;
        n -= (size_t)w;
    }
}

void fake_send(int fd, char *line)
{
    if (line)
        fake_send_raw(fd, line);
    free(line);
}

static const cJSON *fake__id(const cJSON *req)
{
    return cJSON_GetObjectItemCaseSensitive(req, "id");
}

void fake_ok(int fd, const cJSON *req, cJSON *body)
{
    fake_send(fd, vt_proto_ok(fake__id(req), body));
}

void fake_error(int fd, const cJSON *req, int code, const char *message)
{
    fake_send(fd, vt_proto_error(fake__id(req), code, message));
}

void fake_event(int fd, const cJSON *req, const char *event, cJSON *body)
{
    fake_send(fd, vt_proto_event(fake__id(req), event, body));
}

int fake_hello(fake_daemon *d, int fd)
{
    const cJSON *req = fake_recv(d, fd);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    if (!cJSON_IsString(op) || strcmp(op->valuestring, "hello") != 0)
        return -1;
    fake_ok(fd, req, fake_json("{\"version\":1,\"server\":\"vggtuned 0.1.0\","
                               "\"max_frame\":1048576,\"user\":{\"uid\":1000,"
                               "\"name\":\"alice\",\"admin\":false}}"));
    return 0;
}

cJSON *fake_json(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        fprintf(stderr, "fake_json: invalid fixture: %s\n", text);
        abort();
    }
    return j;
}

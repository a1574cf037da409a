/* fake_vggtuned.h - a scripted stand-in for the daemon, for the protocol
 * and client tests.
 *
 * fake_start() listens on DIR/fake.sock and serves nconn connections, one
 * after another, on a thread: each runs the test's script with the
 * connection's fd.  Scripts read requests with fake_recv (every request is
 * also kept in d->log for checks after fake_stop) and answer with the
 * proto builders.  fake_stop() wakes the thread, joins it and removes the
 * socket; close the client first so a script blocked in fake_recv sees EOF.
 */
#ifndef FAKE_VGGTUNED_H
#define FAKE_VGGTUNED_H

#include <pthread.h>

#include <cjson/cJSON.h>

#include "../proto/proto.h"

typedef struct fake_daemon fake_daemon;
typedef void (*fake_script)(fake_daemon *d, int fd);

struct fake_daemon {
    char path[108];
    int lfd;
    int nconn;
    int joined;
    pthread_t thread;
    fake_script script;
    void *ud;          /* the test's */
    cJSON *log;        /* array: every request received */
    vt_framer in;      /* the current connection's */
};

/* Starts serving; returns 0 or -1 (printed). */
int fake_start(fake_daemon **out, const char *dir, fake_script script, void *ud, int nconn);
void fake_stop(fake_daemon *d);

/* Stops accepting and waits for the scripts to end, so d->log may be read;
 * fake_stop then only frees. */
void fake_join(fake_daemon *d);

/* The next request of the connection (owned by d->log), NULL at EOF. */
const cJSON *fake_recv(fake_daemon *d, int fd);

/* Reads the hello request and answers it (version 1, max_frame 1 MiB,
 * user alice); returns 0, or -1 when the client sent something else. */
int fake_hello(fake_daemon *d, int fd);

/* Writes a line (consumed; NULL ignored). */
void fake_send(int fd, char *line);

/* Writes raw bytes. */
void fake_send_raw(int fd, const char *text);

/* A reply/error/event for req's id; body consumed. */
void fake_ok(int fd, const cJSON *req, cJSON *body);
void fake_error(int fd, const cJSON *req, int code, const char *message);
void fake_event(int fd, const cJSON *req, const char *event, cJSON *body);

/* Parses JSON text (test fixtures); aborts on invalid text. */
cJSON *fake_json(const char *text);

#endif

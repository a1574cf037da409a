/* conn.h - client connections of the daemon (loop thread only).
 *
 * Each connection knows its peer from SO_PEERCRED (uid, gid, pid) and reads
 * newline-delimited JSON frames (proto.h).  Output is bounded: while more
 * than VT_CONN_SOFT_LIMIT bytes wait to be written, droppable messages
 * (progress events) are dropped; past VT_CONN_HARD_LIMIT the client is
 * considered stuck and disconnected.  A connection is freed only in its
 * libuv close callback.
 */
#ifndef VT_CONN_H
#define VT_CONN_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "../proto/proto.h"
#include "daemon.h"

#define VT_CONN_SOFT_LIMIT ((size_t)256 << 10)
#define VT_CONN_HARD_LIMIT ((size_t)8 << 20)
#define VT_CONN_HELLO_TIMEOUT 30.0 /* seconds to say hello before being dropped */

struct vt_conn {
    uv_pipe_t pipe;       /* first: the handle's address is the connection's */
    vt_daemon *dm;
    uint64_t id;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    char user[64];
    int admin;            /* root or a member of the admin group */
    vt_framer framer;
    int hello;            /* handshake done */
    double connected;     /* Unix seconds */
    int closing;
    struct vt_conn *next;
};

/* Accepts a pending connection on the listener. */
void vt_conn_accept(vt_daemon *dm);

/* Queues a line (consumed).  Returns 0 when queued, 1 when dropped (a
 * droppable line over the soft limit), -1 when the connection is closing or
 * was closed for being stuck. */
int vt_conn_send(vt_conn *c, char *line, int droppable);

/* Sends line (consumed) and then closes the connection once it is written. */
void vt_conn_send_and_close(vt_conn *c, char *line);

/* Closes now (pending output is discarded). */
void vt_conn_close(vt_conn *c);

/* A connection by id, or NULL when it has gone. */
vt_conn *vt_conn_find(vt_daemon *dm, uint64_t id);

/* Closes connections that never said hello within the timeout. */
void vt_conn_sweep(vt_daemon *dm);

#endif

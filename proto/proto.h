/* proto.h - the wire protocol between vggtune (client) and vggtuned.
 *
 * Newline-delimited JSON over an AF_UNIX stream socket.  Every request is an
 * object with an "id" (integer, or string of at most 64 bytes) and an "op";
 * every reply carries the same id and "ok": true with the result's fields, or
 * "ok": false with {"error": {"code": "EINVAL", "message": "..."}} - codes
 * from the table in common/error.h.  A watch request is answered by a stream
 * of {"id", "event", ...} messages ending with an {"id", "ok": true,
 * "event": "end", ...} reply.  The first request must be "hello" (version
 * handshake).  Frames are at most VT_PROTO_MAX_FRAME bytes including the
 * newline; a longer one is answered ETOOBIG and the connection is closed.
 * proto/PROTOCOL.md specifies every message with examples.
 *
 * This module is shared: the framer and the message builders are used by the
 * daemon, the blocking client connection by the CLI and the tests.
 */
#ifndef VT_PROTO_H
#define VT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define VT_PROTO_VERSION 1
#define VT_PROTO_MAX_FRAME ((size_t)1 << 20)
#define VT_PROTO_MAX_ID 64
#define VT_PROTO_TOP_MAX 64 /* classes a predict reply lists per image at most */
#define VT_PROTO_MAX_IMAGES 1024 /* images one predict request may name */

struct stat;

/* What to say when the socket at path refused us (EACCES), from what the
 * process sees of it: st its stat (NULL: it cannot even be looked at, a
 * folder above it is closed), owner and group their names (NULL: unknown,
 * numbers are shown), in_group whether this process has the socket's group,
 * listed whether the user database puts the user in it (a new login would
 * have it).  Names the socket's actual group, and says "ask to be added"
 * only where being added would help. */
void vt_proto_denied_msg(char *buf, size_t len, const char *path, const struct stat *st,
                       const char *owner, const char *group, int in_group, int listed);

/* ---- framing ----------------------------------------------------------- */

/* Splits a byte stream into lines.  A pending (incomplete) line never grows
 * past max bytes: once a line would be longer than max (newline included),
 * vt_framer_feed returns VT_ETOOBIG and the framer stays in that state.
 * Complete lines fed before the oversized one can still be taken.  Empty
 * and blank lines are skipped.  The fields are private. */
typedef struct {
    char *buf;
    size_t len, cap, max;
    size_t head; /* first byte not yet taken by vt_framer_next */
    size_t tail; /* start of the pending line: [head, tail) are whole lines */
    int too_big;
} vt_framer;

/* An empty framer for lines of at most max bytes (0: VT_PROTO_MAX_FRAME). */
void vt_framer_init(vt_framer *f, size_t max);

/* Frees the buffer; f may be initialised again. */
void vt_framer_free(vt_framer *f);

/* Appends n bytes.  Returns 0, or VT_ETOOBIG when the pending line exceeds
 * max (nothing more is accepted), or VT_ENOMEM. */
int vt_framer_feed(vt_framer *f, const char *data, size_t n);

/* Takes the next complete line out of the buffer: *line (malloc'd,
 * NUL-terminated, newline and a trailing '\r' removed) and *len.  Returns 1,
 * or 0 when no complete line is buffered, or VT_ENOMEM; once the lines
 * before an oversized one are taken, VT_ETOOBIG (so a loop over
 * vt_framer_next learns of the overflow too). */
int vt_framer_next(vt_framer *f, char **line, size_t *len);

/* ---- requests ---------------------------------------------------------- */

/* Parses a request line.  On success *root owns the parsed object, *id
 * points into it (a number or a string) and *op at the op name.  Errors:
 * VT_EPROTO for invalid JSON, a non-object, a missing or ill-typed id or op
 * (message says which); *id is then still set when an id could be read, so
 * the error can be answered to it.  Integers (the id included) must be
 * smaller than 2^53 in magnitude, so that they are exact.  A string holding
 * a NUL (a raw byte or \u0000, which C would read as the string's end) is
 * VT_EINVAL, with *id set only when it is a number (a string id might be
 * the one cut short).  The caller frees *root in every case (it is NULL
 * when the line was not JSON). */
int vt_proto_parse(const char *line, size_t len, cJSON **root, const cJSON **id,
                   const char **op);

/* Typed field readers for request objects.  A missing optional field leaves
 * *out untouched and returns 0; a missing required one or a wrong type is
 * VT_EINVAL with a message naming the field ("job must be an integer"). */
int vt_proto_get_int(const cJSON *obj, const char *field, int required, int64_t *out);
int vt_proto_get_str(const cJSON *obj, const char *field, int required, const char **out);
int vt_proto_get_bool(const cJSON *obj, const char *field, int required, int *out);

/* ---- replies ----------------------------------------------------------- */

/* The daemon's side.  Each builder returns a malloc'd line ending in '\n'
 * (NULL when out of memory), valid UTF-8: bytes that are not (a name or
 * path that came in as raw bytes, echoed in a message) become '?'.  body
 * (may be NULL) is consumed: its fields are moved into the reply object
 * after "id" and "ok"/"event".  (Client requests are sent as given.) */
char *vt_proto_ok(const cJSON *id, cJSON *body);
char *vt_proto_error(const cJSON *id, int code, const char *message);
char *vt_proto_event(const cJSON *id, const char *event, cJSON *body);

/* ---- client side (blocking) -------------------------------------------- */

typedef struct vt_client vt_client;

/* The socket path to use: $VGGTUNE_SOCKET if set, else
 * $XDG_RUNTIME_DIR/vggtune.sock if that exists, else /tmp/vggtune-UID.sock
 * if it is a socket this user owns (a user's daemon without
 * $XDG_RUNTIME_DIR), else /run/vggtune/vggtune.sock.  Writes into buf and
 * returns it. */
const char *vt_proto_default_socket(char *buf, size_t len);

/* Makes the client replace the control characters (vt_utf8_scrub_controls)
 * in every string of the messages it reads from now on: for a client that
 * prints them as text, since they carry names and paths that other users
 * chose.  Off by default. */
void vt_client_printable(vt_client *c, int on);

/* Connects and performs the hello handshake.  Errors: VT_ENOTFOUND with
 * "vggtuned is not running (no socket at PATH)" style messages, VT_EPERM
 * when the socket refuses us, VT_EBUSY when the daemon does (a connection
 * limit, with its message), VT_EPROTO on a version mismatch.  *hello (may
 * be NULL) receives the daemon's hello reply (caller frees). */
int vt_client_connect(vt_client **out, const char *path, cJSON **hello);

/* Sends req (consumed; an "id" is added) and waits for the reply with that
 * id; messages for other ids that arrive meanwhile are kept for
 * vt_client_read.  An "ok": false reply is returned as its negative code
 * (from the error table) with the daemon's message set; *reply (may be
 * NULL) receives the reply object either way (caller frees) and is NULL
 * when no reply came.  Without a reply: VT_EIO (connection lost),
 * VT_EPROTO (the daemon sent something that is not a message), VT_ETOOBIG
 * (the request is over the daemon's max_frame; nothing was sent). */
int vt_client_request(vt_client *c, cJSON *req, cJSON **reply);

/* Makes vt_client_request call fn(ud, what) once when a reply has not come
 * within ms milliseconds (what: {"op": the request's op}), then go on
 * waiting; fn NULL: never. */
void vt_client_on_slow(vt_client *c, int ms, void (*fn)(void *ud, const cJSON *what), void *ud);

/* Makes vt_client_request hand the events of the request it waits for
 * (predict's and eval's progress: {"id", "event", ...} before the reply)
 * to fn(ud, msg) instead of keeping them; fn NULL: keep them. */
void vt_client_on_event(vt_client *c, void (*fn)(void *ud, const cJSON *msg), void *ud);

/* Sends req (consumed) and returns its id (id may be NULL); the caller then
 * reads the stream with vt_client_read.  Errors as vt_client_request's. */
int vt_client_send(vt_client *c, cJSON *req, int64_t *id);

/* Reads the next message from the daemon (blocking; timeout_ms < 0 waits
 * forever; EINTR does not end the wait).  Returns 1 and *msg (caller
 * frees), 0 on timeout, VT_EIO when the connection closed (after every
 * message that came before), VT_EPROTO for a malformed message. */
int vt_client_read(vt_client *c, int timeout_ms, cJSON **msg);

/* The connected socket (for poll()). */
int vt_client_fd(const vt_client *c);

/* Closes and frees; NULL is a no-op. */
void vt_client_close(vt_client *c);

#endif

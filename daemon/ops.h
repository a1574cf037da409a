/* ops.h - answering protocol requests (loop thread).  See proto/PROTOCOL.md. */
#ifndef VT_OPS_H
#define VT_OPS_H

#include <stddef.h>

#include "conn.h"

/* Handles one request line from a connection: parses it, checks the
 * handshake and permissions, acts, and replies (now, or later through a
 * subscription). */
void vt_ops_dispatch(vt_conn *c, const char *line, size_t len);

/* Sends a job's event to its watchers: kind "state", "progress", "epoch",
 * "log" or "end" with body (consumed).  Progress events are droppable. */
void vt_ops_notify(vt_daemon *dm, int64_t job, const char *kind, cJSON *body);

/* Answers the subscriptions a finished job was waiting for (watch end,
 * cancel replies) and removes them. */
void vt_ops_job_ended(vt_daemon *dm, const vt_job *j);

/* Answers the cancel requests of a job whose end waits (for a file write
 * that may take long) with the job as it is: running, cancel_requested
 * (PROTOCOL.md); its watchers see it end. */
void vt_ops_cancel_waits(vt_daemon *dm, const vt_job *j);

/* Tells the client waiting for device request req (predict, eval) how far
 * it has got: a droppable progress event (PROTOCOL.md). */
void vt_ops_device_progress(vt_daemon *dm, uint64_t req, const char *phase, int step,
                            int steps);

/* Answers a device request (predict, eval) with the device's reply. */
void vt_ops_device_reply(vt_daemon *dm, uint64_t req, int code, const char *text);

#endif

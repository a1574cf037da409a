/* error.h - return codes and the thread-local error message.
 *
 * Every fallible function in vggtune returns 0 on success or a negative
 * VT_E* code, and on failure records a human message with vt_error_set().
 * The message lives in thread-local storage, so the device thread, the decode
 * pool and the loop thread never overwrite each other's messages.  The same
 * table gives the stable wire names used by the protocol ("EINVAL", ...).
 */
#ifndef VT_ERROR_H
#define VT_ERROR_H

#include <stdarg.h>

/* X(name, value, description): one row per code, few and stable. */
#define VT_ERROR_TABLE(X)                                                      \
    X(EINVAL, -1, "invalid argument")                                          \
    X(ENOMEM, -2, "out of memory")                                             \
    X(EIO, -3, "input/output error")                                           \
    X(EFORMAT, -4, "malformed file or data")                                   \
    X(ENOTFOUND, -5, "not found")                                              \
    X(EDEVICE, -6, "device error")                                             \
    X(ECANCELLED, -7, "cancelled")                                             \
    X(EPERM, -8, "permission denied")                                          \
    X(EBUSY, -9, "busy or limit reached")                                      \
    X(EUNSUPPORTED, -10, "not supported")                                      \
    X(EPROTO, -11, "protocol error")                                           \
    X(ETOOBIG, -12, "too large")                                               \
    X(EDEVOOM, -13, "out of device memory")                                    \
    X(ESTATE, -14, "not possible in the current state")                        \
    X(EDEVLOST, -15, "device context lost")

enum {
    VT_OK = 0,
#define VT__ERROR_ENUM(name, value, desc) VT_##name = value,
    VT_ERROR_TABLE(VT__ERROR_ENUM)
#undef VT__ERROR_ENUM
};

/* Records a printf-style message for the calling thread and returns code, so
 * callers can write `return vt_error_set(VT_EINVAL, "bad %s", x);`. */
int vt_error_set(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Same as vt_error_set() with a va_list. */
int vt_error_vset(int code, const char *fmt, va_list ap);

/* Prefixes the current message with "what: " (for adding context while an
 * error travels up) and returns code unchanged. */
int vt_error_wrap(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The calling thread's last message; never NULL ("" when none). */
const char *vt_error_msg(void);

/* Forgets the calling thread's message. */
void vt_error_clear(void);

/* Stable name of a code ("EINVAL"); "EUNKNOWN" for codes not in the table. */
const char *vt_error_name(int code);

/* Code for a stable name, or 0 when the name is unknown. */
int vt_error_from_name(const char *name);

/* Short description of a code ("invalid argument"). */
const char *vt_error_desc(int code);

#endif

/* error.c - thread-local error messages and the code table (see error.h). */
#include "error.h"

#include <stdio.h>
#include <string.h>

#define VT_ERROR_MSG_MAX 1024

static _Thread_local char vt__error_msg[VT_ERROR_MSG_MAX];

int vt_error_vset(int code, const char *fmt, va_list ap)
{
    vsnprintf(vt__error_msg, sizeof vt__error_msg, fmt, ap);
    return code;
}

int vt_error_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vt_error_vset(code, fmt, ap);
    va_end(ap);
    return code;
}

int vt_error_wrap(int code, const char *fmt, ...)
{
    char prefix[VT_ERROR_MSG_MAX], old[VT_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, vt__error_msg, sizeof old);
    size_t n = strnlen(prefix, sizeof vt__error_msg - 3);
    memcpy(vt__error_msg, prefix, n);
    memcpy(vt__error_msg + n, ": ", 3);
    n += 2;
    const char *rest = old[0] ? old : vt_error_desc(code);
    size_t m = strnlen(rest, sizeof vt__error_msg - n - 1);
    memcpy(vt__error_msg + n, rest, m);
    vt__error_msg[n + m] = '\0';
    return code;
}

const char *vt_error_msg(void) { return vt__error_msg; }

void vt_error_clear(void) { vt__error_msg[0] = '\0'; }

const char *vt_error_name(int code)
{
    switch (code) {
#define VT__ERROR_NAME(name, value, desc) case value: return #name;
        VT_ERROR_TABLE(VT__ERROR_NAME)
#undef VT__ERROR_NAME
    default: return "EUNKNOWN";
    }
}

int vt_error_from_name(const char *name)
{
#define VT__ERROR_FIND(n, value, desc) if (strcmp(name, #n) == 0) return value;
    VT_ERROR_TABLE(VT__ERROR_FIND)
#undef VT__ERROR_FIND
    return 0;
}

const char *vt_error_desc(int code)
{
    switch (code) {
#define VT__ERROR_DESC(name, value, desc) case value: return desc;
        VT_ERROR_TABLE(VT__ERROR_DESC)
#undef VT__ERROR_DESC
    default: return "unknown error";
    }
}

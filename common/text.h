/* text.h - building messages in fixed buffers. */
#ifndef VT_TEXT_H
#define VT_TEXT_H

#include <stddef.h>

/* Appends what fmt makes to the NUL-terminated string in buf (len bytes in
 * all), cutting it at the end of buf; buf stays NUL-terminated. */
void vt_text_append(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

/* utf8.h - strict UTF-8: no overlong forms, no surrogates, nothing past
 * U+10FFFF (the rule of Rust's str::from_utf8, which the safetensors
 * reference reader applies). */
#ifndef VT_UTF8_H
#define VT_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length (1-4) of the valid sequence at s, of which n bytes are available,
 * or 0 when none starts there.  n >= 1. */
int vt_utf8_seq(const uint8_t *s, size_t n);

/* Whether s[0..n) is valid UTF-8. */
int vt_utf8_valid(const uint8_t *s, size_t n);

/* Replaces, in place, each byte of the NUL-terminated text that is not
 * part of a valid UTF-8 sequence (overlong forms and surrogates included)
 * with '?'. */
void vt_utf8_scrub(char *text);

/* Replaces, in place, each control character of the NUL-terminated UTF-8
 * text but tab and newline - C0, DEL and C1 (U+0080-U+009F, which some
 * terminals take as escapes) - with '?', so that printing it cannot move a
 * terminal's cursor or send it escape sequences. */
void vt_utf8_scrub_controls(char *text);

/* The character at s (not at its end): returns its bytes and sets *cols to
 * the terminal columns it takes (0 for combining marks, 2 for East Asian
 * wide characters and emoji, else 1).  A byte that starts no valid UTF-8
 * sequence counts as one column (shown as one replacement character). */
size_t vt_utf8_char(const char *s, int *cols);

/* Terminal columns the NUL-terminated string s takes (vt_utf8_char's). */
int vt_utf8_width(const char *s);

#endif

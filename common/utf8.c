/* utf8.c - strict UTF-8 (see utf8.h). */
#include "utf8.h"

#include <string.h>

int vt_utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return (int)len;
}

int vt_utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int len = vt_utf8_seq(s + i, n - i);
        if (len == 0)
            return 0;
        i += (size_t)len;
    }
    return 1;
}

void vt_utf8_scrub(char *text)
{
    unsigned char *s = (unsigned char *)text;
    size_t left = strlen(text);
    while (*s) {
        int n = vt_utf8_seq(s, left);
        if (n == 0)
            n = 1, *s = '?';
        s += n;
        left -= (size_t)n;
    }
}

void vt_utf8_scrub_controls(char *text)
{
    unsigned char *s = (unsigned char *)text, *o = s;
    for (; *s; s++) {
        if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) /* C1 */
            *o++ = '?', s++;
        else if ((*s < 0x20 && *s != '\t' && *s != '\n') || *s == 0x7f)
            *o++ = '?';
        else
            *o++ = *s;
    }
    *o = '\0';
}

/* ---- display width ----------------------------------------------------- */

/* Columns a code point takes on a terminal: 0 for combining marks and
 * zero-width characters, 2 for East Asian wide and fullwidth ones and
 * emoji, else 1.  A small table in the spirit of Markus Kuhn's wcwidth, so
 * that the result does not depend on the locale (the programs do not set
 * one, and tests run in "C"). */
static int vt__cp_width(uint32_t cp)
{
    static const uint32_t zero[][2] = {
        {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a},
        {0x064b, 0x065f}, {0x0e31, 0x0e31}, {0x0e34, 0x0e3a}, {0x0e47, 0x0e4e},
        {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff}, {0x200b, 0x200f}, {0x20d0, 0x20ff},
        {0x302a, 0x302d}, {0x3099, 0x309a}, {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f},
        {0xfeff, 0xfeff},
    };
    static const uint32_t wide[][2] = {
        {0x1100, 0x115f}, {0x2329, 0x232a}, {0x2e80, 0x303e}, {0x3041, 0x33ff},
        {0x3400, 0x4dbf}, {0x4e00, 0x9fff}, {0xa000, 0xa4cf}, {0xac00, 0xd7a3},
        {0xf900, 0xfaff}, {0xfe10, 0xfe19}, {0xfe30, 0xfe6f}, {0xff00, 0xff60},
        {0xffe0, 0xffe6}, {0x1f300, 0x1f64f}, {0x1f900, 0x1f9ff}, {0x20000, 0x2fffd},
        {0x30000, 0x3fffd},
    };
    for (size_t k = 0; k < sizeof zero / sizeof zero[0]; k++)
        if (cp >= zero[k][0] && cp <= zero[k][1])
            return 0;
    for (size_t k = 0; k < sizeof wide / sizeof wide[0]; k++)
        if (cp >= wide[k][0] && cp <= wide[k][1])
            return 2;
    return 1;
}

size_t vt_utf8_char(const char *s, int *cols)
{
    const uint8_t *u = (const uint8_t *)s;
    int n = vt_utf8_seq(u, strnlen(s, 4));
    uint32_t cp;

    if (n <= 1) {
        *cols = 1;
        return 1;
    }
    cp = u[0] & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
    for (int k = 1; k < n; k++)
        cp = (cp << 6) | (u[k] & 0x3f);
    *cols = vt__cp_width(cp);
    return (size_t)n;
}

int vt_utf8_width(const char *s)
{
    int w = 0, cols;
    while (*s) {
        s += vt_utf8_char(s, &cols);
        w += cols;
    }
    return w;
}

/* vt_test.h - the project's small test harness.
 *
 * A test binary lists its cases in a table and hands it to vt_test_main():
 *
 *   static const vt_test_case cases[] = {
 *       {"conv_fwd", test_conv_fwd, VT_TEST_NUMERIC},
 *       {"parse_spec", test_parse_spec, 0},
 *   };
 *   int main(int argc, char **argv) { VT_TEST_MAIN(cases); }
 *
 * Usage: test_x [--backend cpu|cuda] [--list] [NAME-SUBSTRING ...]
 * Numeric cases receive the selected backend; the others receive NULL and run
 * only with the CPU backend.  With --backend cuda and no usable GPU the binary
 * prints which cases it skips and why, and exits 77 (CTest's skip code).
 * A failed check prints both sides and ends the case; the binary exits 1 if
 * any case failed.
 */
#ifndef VT_TEST_H
#define VT_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../common/error.h"
#include "../kernels/backend.h"

#define VT_TEST_NUMERIC 1 /* run on the selected backend */

typedef struct {
    const char *name;
    void (*fn)(vt_backend *be);
    int flags;
} vt_test_case;

int vt_test_main(int argc, char **argv, const vt_test_case *cases, size_t n);
#define VT_TEST_MAIN(cases) return vt_test_main(argc, argv, cases, sizeof cases / sizeof cases[0])

/* Marks the running case failed with a message. */
void vt_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Compares two float arrays with |got - want| <= atol + rtol*|want|; on
 * failure prints the first mismatches and the largest error and returns 0. */
int vt_test_allclose(const char *what, const float *got, const float *want, size_t n,
                     double atol, double rtol);

/* A fresh directory under $TMPDIR (or /tmp), removed at exit unless the
 * case failed; returns a static buffer valid until the next call. */
const char *vt_test_tmpdir(const char *tag);

/* Directory of the running test binary's build tree (for helper programs). */
extern const char *vt_test_bindir;

#define VT_CHECK(cond)                                                         \
    do {                                                                       \
        if (!(cond)) {                                                         \
            vt_test_fail(__FILE__, __LINE__, "check failed: %s", #cond);       \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_OK(expr)                                                      \
    do {                                                                       \
        int vt_rc_ = (expr);                                                   \
        if (vt_rc_ < 0) {                                                      \
            vt_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #expr,            \
                         vt_error_name(vt_rc_), vt_error_msg());               \
            return;                                                            \
        }                                                                      \
    } while (0)

/* expr must fail with code (0 = any error) and, when substr is not NULL, its
 * message must contain substr. */
#define VT_CHECK_ERR(expr, code, substr)                                       \
    do {                                                                       \
        vt_error_clear();                                                      \
        int vt_rc_ = (expr);                                                   \
        const char *vt_sub_ = (substr);                                        \
        if (vt_rc_ >= 0 || ((code) != 0 && vt_rc_ != (code)) ||               \
            (vt_sub_ && !strstr(vt_error_msg(), vt_sub_))) {                   \
            vt_test_fail(__FILE__, __LINE__,                                   \
                         "%s -> %d (%s) \"%s\"; expected %s containing \"%s\"", \
                         #expr, vt_rc_, vt_error_name(vt_rc_), vt_error_msg(), \
                         vt_error_name(code), vt_sub_ ? vt_sub_ : "");         \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_INT(a, b)                                                     \
    do {                                                                       \
        long long vt_a_ = (long long)(a), vt_b_ = (long long)(b);              \
        if (vt_a_ != vt_b_) {                                                  \
            vt_test_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, \
                         vt_a_, vt_b_);                                        \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_NEAR(a, b, tol)                                               \
    do {                                                                       \
        double vt_a_ = (double)(a), vt_b_ = (double)(b);                       \
        if (!(fabs(vt_a_ - vt_b_) <= (tol))) {                                 \
            vt_test_fail(__FILE__, __LINE__, "%s ~= %s: %.9g vs %.9g (tol %g)", \
                         #a, #b, vt_a_, vt_b_, (double)(tol));                 \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_STR(a, b)                                                     \
    do {                                                                       \
        const char *vt_a_ = (a), *vt_b_ = (b);                                 \
        if (!vt_a_ || !vt_b_ || strcmp(vt_a_, vt_b_) != 0) {                   \
            vt_test_fail(__FILE__, __LINE__, "%s == %s: \"%s\" vs \"%s\"", #a,  \
                         #b, vt_a_ ? vt_a_ : "(null)", vt_b_ ? vt_b_ : "(null)"); \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_CONTAINS(s, sub)                                              \
    do {                                                                       \
        const char *vt_s_ = (s), *vt_sub_ = (sub);                             \
        if (!vt_s_ || !strstr(vt_s_, vt_sub_)) {                               \
            vt_test_fail(__FILE__, __LINE__, "%s should contain \"%s\": \"%s\"", \
                         #s, vt_sub_, vt_s_ ? vt_s_ : "(null)");               \
            return;                                                            \
        }                                                                      \
    } while (0)

#define VT_CHECK_CLOSE(what, got, want, n, atol, rtol)                         \
    do {                                                                       \
        if (!vt_test_allclose(what, got, want, n, atol, rtol)) {               \
            vt_test_fail(__FILE__, __LINE__, "%s not close", what);            \
            return;                                                            \
        }                                                                      \
    } while (0)

#endif

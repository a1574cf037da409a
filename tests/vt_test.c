/* vt_test.c - the harness behind vt_test.h: case selection, backends,
 * failure reporting and temporary directories. */
#include "vt_test.h"

#include <ftw.h>
#include <sys/stat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

static int vt__failed_case;
static int vt__keep_tmp;
static char vt__tmp[PATH_MAX];
static char vt__bindir_buf[PATH_MAX];
const char *vt_test_bindir = ".";

void vt_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    vt__failed_case = 1;
    vt__keep_tmp = 1;
}

int vt_test_allclose(const char *what, const float *got, const float *want, size_t n,
                     double atol, double rtol)
{
    size_t bad = 0, worst = 0;
    double worst_err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(err <= lim)) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g want %.9g (err %.3g > %.3g)\n",
                        what, i, got[i], want[i], err, lim);
            bad++;
        }
        if (err > worst_err || err != err) {
            worst_err = err;
            worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %zu of %zu elements differ; max error %.3g at %zu\n",
                what, bad, n, worst_err, worst);
    return bad == 0;
}

static int vt__rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static void vt__cleanup(void)
{
    if (vt__tmp[0] && !vt__keep_tmp)
        nftw(vt__tmp, vt__rm, 16, FTW_DEPTH | FTW_PHYS);
    else if (vt__tmp[0])
        fprintf(stderr, "  kept %s for inspection\n", vt__tmp);
}

const char *vt_test_tmpdir(const char *tag)
{
    static char dir[PATH_MAX + 64];
    static int n;
    if (!vt__tmp[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(vt__tmp, sizeof vt__tmp, "%s/vt-test-XXXXXX", base ? base : "/tmp");
        if (!mkdtemp(vt__tmp)) {
            perror("mkdtemp");
            exit(2);
        }
        atexit(vt__cleanup);
    }
    snprintf(dir, sizeof dir, "%s/%s-%d", vt__tmp, tag, n++);
    if (mkdir(dir, 0755) < 0) {
        perror(dir);
        exit(2);
    }
    return dir;
}

static int vt__selected(const char *name, int argc, char **argv, int first)
{
    int any = 0;
    for (int i = first; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        any = 1;
        if (strstr(name, argv[i]))
            return 1;
    }
    return !any;
}

int vt_test_main(int argc, char **argv, const vt_test_case *cases, size_t n)
{
    const char *backend = "cpu";
    vt_backend *be = NULL;
    int failed = 0, ran = 0, numeric_selected = 0;
    char *slash;

    snprintf(vt__bindir_buf, sizeof vt__bindir_buf, "%s", argv[0]);
    if ((slash = strrchr(vt__bindir_buf, '/'))) {
        *slash = '\0';
        vt_test_bindir = vt__bindir_buf;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t c = 0; c < n; c++)
                printf("%s%s\n", cases[c].name,
                       cases[c].flags & VT_TEST_NUMERIC ? " (numeric)" : "");
            return 0;
        }
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            backend = argv[++i];
            argv[i] = "-"; /* not a name filter */
        }
    }
    for (size_t c = 0; c < n; c++)
        if ((cases[c].flags & VT_TEST_NUMERIC) && vt__selected(cases[c].name, argc, argv, 1))
            numeric_selected++;
    if (numeric_selected && vt_backend_create(&be, backend, 0) < 0) {
        if (strcmp(backend, "cpu") != 0) {
            printf("SKIP backend %s: %s\n", backend, vt_error_msg());
            for (size_t c = 0; c < n; c++)
                if ((cases[c].flags & VT_TEST_NUMERIC) &&
                    vt__selected(cases[c].name, argc, argv, 1))
                    printf("SKIP %s[%s]\n", cases[c].name, backend);
            return 77;
        }
        fprintf(stderr, "cannot create backend %s: %s\n", backend, vt_error_msg());
        return 1;
    }
    for (size_t c = 0; c < n; c++) {
        int numeric = cases[c].flags & VT_TEST_NUMERIC;
        if (!vt__selected(cases[c].name, argc, argv, 1))
            continue;
        if (!numeric && strcmp(backend, "cpu") != 0)
            continue;
        vt__failed_case = 0;
        vt_error_clear();
        printf("RUN  %s[%s]\n", cases[c].name, numeric ? backend : "-");
        cases[c].fn(numeric ? be : NULL);
        printf("%s %s\n", vt__failed_case ? "FAIL" : "ok  ", cases[c].name);
        failed += vt__failed_case;
        ran++;
    }
    vt_backend_free(be);
    printf("%d of %d cases passed\n", ran - failed, ran);
    if (ran == 0 && strcmp(backend, "cpu") != 0)
        return 77;
    return failed ? 1 : 0;
}

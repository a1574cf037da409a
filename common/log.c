/* log.c - levelled logging to stderr (see log.h). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static const char *vt__log_prog = "vggtune";
static vt_log_level vt__log_max = VT_LOG_INFO;
static int vt__log_journal = -1; /* -1: not yet checked */
static double vt__log_t0 = -1;    /* VGGTUNE_LOG_TIME: seconds at init, else -1 */

/* Whether stderr is the journal's stream: systemd sets JOURNAL_STREAM to
 * its "DEVICE:INODE", and children inherit the variable whatever their
 * stderr is (a shell started from a service, a command whose output goes
 * to a file), where the "<N>" prefixes would only garble the lines. */
static int vt__log_to_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    int used = 0;
    if (!v || sscanf(v, "%llu:%llu%n", &dev, &ino, &used) != 2 || v[used] != '\0' ||
        fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void vt_log_init(const char *progname, vt_log_level max_level)
{
    vt__log_prog = progname;
    vt__log_max = max_level;
    vt__log_journal = vt__log_to_journal();
    const char *t = getenv("VGGTUNE_LOG_TIME");
    if (vt__log_t0 < 0) /* from the first call: the daemon calls this twice */
        vt__log_t0 = t && *t && strcmp(t, "0") != 0 ? vt_clock_mono() : -1;
}

static const char *vt__log_name(vt_log_level level)
{
    switch (level) {
    case VT_LOG_ERROR: return "error";
    case VT_LOG_WARN: return "warn";
    case VT_LOG_INFO: return "info";
    default: return "debug";
    }
}

int vt_log_level_parse(const char *name)
{
    static const vt_log_level all[] = {VT_LOG_ERROR, VT_LOG_WARN, VT_LOG_INFO,
                                       VT_LOG_DEBUG};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, vt__log_name(all[i])) == 0)
            return (int)all[i];
    return -1;
}

void vt_log(vt_log_level level, const char *fmt, ...)
{
    char line[2048];
    int n;
    va_list ap;

    if (level > vt__log_max)
        return;
    if (vt__log_journal < 0)
        vt__log_journal = vt__log_to_journal();
    if (vt__log_journal)
        n = snprintf(line, sizeof line, "<%d>", (int)level);
    else if (vt__log_t0 >= 0)
        n = snprintf(line, sizeof line, "%9.3f %s: %s: ", vt_clock_mono() - vt__log_t0,
                     vt__log_prog, vt__log_name(level));
    else
        n = snprintf(line, sizeof line, "%s: %s: ", vt__log_prog,
                     vt__log_name(level));
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line keeps lines from different threads whole. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0)
        return;
}

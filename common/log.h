/* log.h - levelled logging to stderr.
 *
 * One line per message.  Under systemd (stderr the stream JOURNAL_STREAM
 * names) each line starts with the syslog priority prefix "<N>" so the
 * journal records the level;
 * otherwise lines read "vggtuned: warn: ...", or with VGGTUNE_LOG_TIME=1 in
 * the environment "   12.345 vggtuned: warn: ..." (seconds since
 * vt_log_init, for finding where time goes).  Safe to call from any thread
 * (each line is one write(2)).
 */
#ifndef VT_LOG_H
#define VT_LOG_H

typedef enum {
    VT_LOG_ERROR = 3,
    VT_LOG_WARN = 4,
    VT_LOG_INFO = 6,
    VT_LOG_DEBUG = 7,
} vt_log_level;

/* Sets the program name shown in each line and the least severe level still
 * printed (default: "vggtune", VT_LOG_INFO).  Call once before threads start. */
void vt_log_init(const char *progname, vt_log_level max_level);

/* Prints one line at the given level when the level is enabled. */
void vt_log(vt_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int vt_log_level_parse(const char *name);

#define vt_log_error(...) vt_log(VT_LOG_ERROR, __VA_ARGS__)
#define vt_log_warn(...) vt_log(VT_LOG_WARN, __VA_ARGS__)
#define vt_log_info(...) vt_log(VT_LOG_INFO, __VA_ARGS__)
#define vt_log_debug(...) vt_log(VT_LOG_DEBUG, __VA_ARGS__)

#endif

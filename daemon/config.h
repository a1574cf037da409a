/* config.h - the daemon's settings: defaults, config file, command line.
 *
 * Precedence: command line > config file > defaults.  The config file is
 * "key = value" lines ('#' starts a comment); keys are the long option names
 * (socket, state-dir, backend, weights, ...).  Defaults depend on how the
 * daemon runs: as a system service (root, or systemd's RUNTIME_DIRECTORY set)
 * it uses /run/vggtune/vggtune.sock and /var/lib/vggtune; run by a user for
 * themself it uses $XDG_RUNTIME_DIR/vggtune.sock and
 * $XDG_STATE_HOME/vggtune (~/.local/state/vggtune).
 */
#ifndef VT_CONFIG_H
#define VT_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

typedef struct {
    char socket[PATH_MAX];
    char state_dir[PATH_MAX];
    char backend[16];          /* auto, cpu, cuda */
    char weights[PATH_MAX];    /* resident trunk; "" = the seeded random trunk */
    char admin_group[64];      /* members see and manage every job; "" = root only */
    char socket_group[64];     /* group owning the socket we create; "" = ours */
    int socket_mode;           /* permissions of a socket we create */
    int max_queued;            /* per user: jobs waiting */
    int max_running;           /* per user: jobs admitted at once */
    int max_clients;           /* connections at once */
    int max_clients_user;      /* connections at once of one user (root: no limit) */
    int threads;               /* decode and CPU-backend threads, 0 = all cores */
    size_t reserve_mb;         /* device memory kept free by admission */
    long cache_mb;             /* device MiB for a job's feature caches; -1 = automatic */
    long host_cache_mb;        /* host MiB for those that do not fit; -1 = automatic */
    int log_level;             /* vt_log_level */
    int system;                /* running as a system service */
} vt_config;

/* Fills defaults, reads the config file (--config FILE, else
 * /etc/vggtune/vggtuned.conf when it exists and we run as a service), then
 * the command line.  Returns 0, 1 when --help/--version was handled, or a
 * negative code with the message set (unknown option, bad value). */
int vt_config_load(vt_config *c, int argc, char **argv);

/* Parses v, the value of setting or option key, as an integer in lo..hi
 * into *out; VT_EINVAL with a message naming key otherwise. */
int vt_config_int(const char *key, const char *v, long lo, long hi, long *out);

/* The daemon's --help text. */
void vt_config_usage(FILE *f);

#endif

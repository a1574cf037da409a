/* config.c - defaults, config file and command line (see config.h). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/error.h"
#include "../common/log.h"
#include "../kernels/backend.h"

#define VT_SYSTEM_CONFIG "/etc/vggtune/vggtuned.conf"

void vt_config_usage(FILE *f)
{
    fprintf(f,
        "usage: vggtuned [options]\n"
        "Serves VGG16 transfer-learning jobs on a Unix socket; the frozen trunk stays\n"
        "resident on the device and jobs share it.  Clients use 'vggtune'.\n\n"
        "  --socket PATH        listen here (service: /run/vggtune/vggtune.sock,\n"
        "                       else $XDG_RUNTIME_DIR/vggtune.sock, else\n"
        "                       /tmp/vggtune-UID.sock); with systemd\n"
        "                       socket activation the passed socket is used\n"
        "  --state-dir DIR      job database and checkpoints (service: /var/lib/vggtune,\n"
        "                       else $XDG_STATE_HOME/vggtune)\n"
        "  --backend B          auto (CUDA when a GPU is usable, else CPU), cpu, cuda\n"
        "  --weights FILE       VGG16 weights to keep resident (Keras .h5 or\n"
        "                       safetensors); default: a seeded random trunk\n"
        "  --config FILE        settings file, 'key = value' per line with these\n"
        "                       option names; 'none': no file (default, as root or\n"
        "                       a service: %s if it exists; the\n"
        "                       installed unit names the one of its prefix)\n"
        "  --admin-group G      members see and manage every user's jobs (root always)\n"
        "  --socket-group G     group of the socket we create (mode 0660)\n"
        "  --max-queued N       jobs one user may have waiting (default 16)\n"
        "  --max-running N      jobs of one user trained at once (default 4)\n"
        "  --max-clients N      connections at once (default 256)\n"
        "  --max-clients-per-user N\n"
        "                       connections at once of one user, root excepted\n"
        "                       (default 32), so that no user can take them all\n"
        "  --threads N          decode and CPU threads (default: all cores)\n"
        "  --reserve-mb N       device memory admission keeps free (default 512)\n"
        "  --cache-mb N         device memory for one job's feature caches (default:\n"
        "                       half of what is free; 0 = none on the device)\n"
        "  --host-cache-mb N    host memory for one job's caches that do not fit the\n"
        "                       device (default: half of what is available with a\n"
        "                       GPU, 0 with the CPU backend)\n"
        "  --log-level L        error, warn, info (default, or $VGGTUNE_LOG), debug\n"
        "  --help, --version\n"
        "Other commands: vggtuned run JOB.json | predict MODEL IMAGE... | eval MODEL DIR\n",
        VT_SYSTEM_CONFIG);
}

static void vt__defaults(vt_config *c)
{
    const char *rt = getenv("RUNTIME_DIRECTORY"), *state = getenv("STATE_DIRECTORY");
    const char *xdg_rt = getenv("XDG_RUNTIME_DIR"), *xdg_state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");

    memset(c, 0, sizeof *c);
    c->system = geteuid() == 0 || rt != NULL;
    if (c->system) {
        snprintf(c->socket, sizeof c->socket, "%s/vggtune.sock", rt ? rt : "/run/vggtune");
        snprintf(c->state_dir, sizeof c->state_dir, "/var/lib/vggtune");
    } else {
        if (xdg_rt) /* else a per-user name: /tmp is shared (vt_proto_default_socket) */
            snprintf(c->socket, sizeof c->socket, "%s/vggtune.sock", xdg_rt);
        else
            snprintf(c->socket, sizeof c->socket, "/tmp/vggtune-%u.sock", (unsigned)geteuid());
        if (xdg_state)
            snprintf(c->state_dir, sizeof c->state_dir, "%s/vggtune", xdg_state);
        else
            snprintf(c->state_dir, sizeof c->state_dir, "%s/.local/state/vggtune",
                     home ? home : "/tmp");
    }
    if (state) /* systemd's StateDirectory= wins, for system and user units */
        snprintf(c->state_dir, sizeof c->state_dir, "%s", state);
    snprintf(c->backend, sizeof c->backend, "auto");
    c->socket_mode = c->system ? 0660 : 0600;
    c->max_queued = 16;
    c->max_running = 4;
    c->max_clients = 256;
    c->max_clients_user = 32;
    c->reserve_mb = 512;
    c->cache_mb = -1;
    c->host_cache_mb = -1;
    /* the environment's VGGTUNE_LOG (read by main), unless the config or
     * --log-level says otherwise */
    const char *env = getenv("VGGTUNE_LOG");
    int lv = env ? vt_log_level_parse(env) : -1;
    c->log_level = lv >= 0 ? lv : VT_LOG_INFO;
}

int vt_config_int(const char *key, const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || *end || end == v || n < lo || n > hi)
        return vt_error_set(VT_EINVAL, "%s must be an integer from %ld to %ld, got '%s'", key,
                            lo, hi, v);
    *out = n;
    return 0;
}

static int vt__str(const char *key, const char *v, char *dst, size_t len)
{
    /* (an empty weights or group is the default; an empty path is a slip) */
    if (!*v && (!strcmp(key, "socket") || !strcmp(key, "state-dir")))
        return vt_error_set(VT_EINVAL, "%s must not be empty", key);
    if (strlen(v) >= len)
        return vt_error_set(VT_EINVAL, "%s is too long", key);
    snprintf(dst, len, "%s", v);
    return 0;
}

/* Applies one setting by its long option name. */
static int vt__set(vt_config *c, const char *key, const char *v)
{
    long n = 0;
    int rc;
    if (!strcmp(key, "socket"))
        return vt__str(key, v, c->socket, sizeof c->socket);
    if (!strcmp(key, "state-dir"))
        return vt__str(key, v, c->state_dir, sizeof c->state_dir);
    if (!strcmp(key, "weights"))
        return vt__str(key, v, c->weights, sizeof c->weights);
    if (!strcmp(key, "admin-group"))
        return vt__str(key, v, c->admin_group, sizeof c->admin_group);
    if (!strcmp(key, "socket-group")) {
        c->socket_mode = 0660;
        return vt__str(key, v, c->socket_group, sizeof c->socket_group);
    }
    if (!strcmp(key, "backend")) {
        if (strcmp(v, "auto") && strcmp(v, "cpu") && strcmp(v, "cuda"))
            return vt_error_set(VT_EINVAL, "backend must be auto, cpu or cuda, got '%s'", v);
        return vt__str(key, v, c->backend, sizeof c->backend);
    }
    if (!strcmp(key, "log-level")) {
        if ((rc = vt_log_level_parse(v)) < 0)
            return vt_error_set(VT_EINVAL, "log-level must be error, warn, info or debug");
        c->log_level = rc;
        return 0;
    }
#define VT__INT(name, field, lo, hi) \
    if (!strcmp(key, name)) { \
        if ((rc = vt_config_int(key, v, lo, hi, &n)) < 0) \
            return rc; \
        c->field = n; \
        return 0; \
    }
    VT__INT("max-queued", max_queued, 1, 100000)
    VT__INT("max-running", max_running, 1, 1000)
    VT__INT("max-clients", max_clients, 1, 100000)
    VT__INT("max-clients-per-user", max_clients_user, 1, 100000)
    VT__INT("threads", threads, 0, 1024)
    VT__INT("reserve-mb", reserve_mb, 0, 1L << 30)
    VT__INT("cache-mb", cache_mb, -1, 1L << 30)
    VT__INT("host-cache-mb", host_cache_mb, -1, 1L << 30)
#undef VT__INT
    return vt_error_set(VT_EINVAL, "unknown setting '%s'", key);
}

static char *vt__trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int vt__read_file(vt_config *c, const char *path, int must_exist)
{
    FILE *f = fopen(path, "r");
    char line[PATH_MAX + 64];
    int lineno = 0, rc = 0;
    if (!f) {
        if (!must_exist && errno == ENOENT)
            return 0;
        return vt_error_set(VT_EIO, "cannot read config file %s: %s", path, strerror(errno));
    }
    while (rc == 0 && fgets(line, sizeof line, f)) {
        char *eq, *key, *val, *p = line;
        lineno++;
        /* A comment: '#' to the end of the line, except inside a value that
         * starts with a quote, up to its closing quote ("a#b" or 'bob''s' no:
         * only a leading quote quotes; /models/bob's.h5 is plain).  A '#'
         * before the '=' is no value's: the line is commented out, quoted
         * value and all (# weights = "/models/vgg16.h5"). */
        if ((eq = strchr(line, '=')) && !memchr(line, '#', (size_t)(eq - line))) {
            char *v = eq + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if ((*v == '"' || *v == '\'') && strchr(v + 1, *v))
                p = strchr(v + 1, *v) + 1;
        }
        if ((p = strchr(p, '#')))
            *p = '\0';
        key = vt__trim(line);
        if (!*key)
            continue;
        if (!(eq = strchr(key, '='))) {
            rc = vt_error_set(VT_EINVAL, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        val = vt__trim(eq + 1);
        key = vt__trim(key);
        size_t n = strlen(val); /* "a value" or 'a value': the quotes are not part of it */
        if (n >= 2 && (val[0] == '"' || val[0] == '\'') && val[n - 1] == val[0]) {
            val[n - 1] = '\0';
            val++;
        }
        if ((rc = vt__set(c, key, val)) < 0)
            vt_error_wrap(rc, "%s:%d", path, lineno);
    }
    /* a directory opens, and its first read fails (EISDIR): not an empty file */
    if (rc == 0 && ferror(f))
        rc = vt_error_set(VT_EIO, "cannot read config file %s: %s", path, strerror(errno));
    fclose(f);
    return rc;
}

/* 1 when group name exists, 0 when not, -errno when the lookup failed (a
 * group of many members needs a larger buffer: it grows). */
static int vt__group_exists(const char *name)
{
    size_t len = 4096;
    for (;;) {
        struct group gr, *res = NULL;
        char *buf = malloc(len);
        int e;
        if (!buf)
            return -ENOMEM;
        e = getgrnam_r(name, &gr, buf, len, &res);
        free(buf);
        if (e == ERANGE && len < ((size_t)1 << 24)) {
            len *= 4;
            continue;
        }
        if (e == ENOENT || e == ESRCH) /* "not found", as some NSS modules say it */
            return 0;
        return e ? -e : res != NULL;
    }
}

int vt_config_load(vt_config *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 0},      {"state-dir", required_argument, NULL, 0},
        {"backend", required_argument, NULL, 0},     {"weights", required_argument, NULL, 0},
        {"config", required_argument, NULL, 0},      {"admin-group", required_argument, NULL, 0},
        {"socket-group", required_argument, NULL, 0}, {"max-queued", required_argument, NULL, 0},
        {"max-running", required_argument, NULL, 0}, {"max-clients", required_argument, NULL, 0},
        {"max-clients-per-user", required_argument, NULL, 0},
        {"threads", required_argument, NULL, 0},     {"reserve-mb", required_argument, NULL, 0},
        {"cache-mb", required_argument, NULL, 0},    {"host-cache-mb", required_argument, NULL, 0},
        {"log-level", required_argument, NULL, 0},
        {"help", no_argument, NULL, 'h'},            {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0}};
    const char *config = NULL;
    int opt, idx, rc;

    vt__defaults(c);
    /* First pass: only --config and --help/--version, so the file comes
     * before the other options. */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, &idx)) != -1) {
        if (opt == 'h') {
            vt_config_usage(stdout);
            return 1;
        }
        if (opt == 'V') {
            printf("vggtuned %s (backends: %s)\n", VT_VERSION, vt_backend_compiled());
            return 1;
        }
        if (opt == 0 && !strcmp(opts[idx].name, "config"))
            config = optarg;
    }
    if (config && !strcmp(config, "none"))
        rc = 0;
    else if (config)
        rc = vt__read_file(c, config, 1);
    else
        rc = c->system ? vt__read_file(c, VT_SYSTEM_CONFIG, 0) : 0;
    if (rc < 0)
        return rc;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", opts, &idx)) != -1) {
        if (opt == '?')
            return vt_error_set(VT_EINVAL, "unknown option %s (see --help)", argv[optind - 1]);
        if (opt == ':')
            return vt_error_set(VT_EINVAL, "option %s needs a value", argv[optind - 1]);
        if (opt == 0 && strcmp(opts[idx].name, "config") && (rc = vt__set(c, opts[idx].name, optarg)) < 0)
            return rc;
    }
    if (optind < argc)
        return vt_error_set(VT_EINVAL, "unexpected argument '%s' (see --help)", argv[optind]);
    /* groups named that do not exist: said now, before the device starts */
    for (int k = 0; k < 2; k++) {
        const char *g = k ? c->socket_group : c->admin_group;
        int e = g[0] ? vt__group_exists(g) : 1;
        if (e == 0)
            return vt_error_set(VT_EINVAL, "%s: no group '%s' (create it with groupadd, or "
                                "leave the setting out)", k ? "socket-group" : "admin-group", g);
        if (e < 0)
            return vt_error_set(VT_EIO, "%s: cannot look up group '%s': %s",
                                k ? "socket-group" : "admin-group", g, strerror(-e));
    }
    return 0;
}

/* cli.h - the vggtune client's logic, kept apart from main() so the tests
 * can drive it with their own streams, working directory and a fake daemon.
 *
 *   args.c      option parsing, building and checking the job document
 *   render.c    tables and lines for replies and events (pure: JSON in,
 *               text out)
 *   commands.c  the commands: connect, send, wait, render, exit status
 *   main.c      the process: streams, terminal, signals
 */
#ifndef VT_CLI_H
#define VT_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* Exit statuses. */
enum {
    VT_CLI_OK = 0,          /* success (watch: the job succeeded) */
    VT_CLI_FAILED = 1,      /* the operation failed; watched job failed/cancelled */
    VT_CLI_USAGE = 2,       /* bad command line or job document */
    VT_CLI_UNREACHABLE = 3, /* cannot reach the daemon (or lost it) */
    VT_CLI_INTERRUPTED = 130, /* Ctrl-C stopped a watch (the job goes on) */
};

/* How one run of the client is wired to the world. */
typedef struct {
    FILE *out;                 /* results */
    FILE *err;                 /* "vggtune: ..." messages */
    int tty;                   /* out is a terminal: live progress line */
    int line_open;             /* a progress line of predict or eval is on out */
    volatile sig_atomic_t width;       /* its columns; 0: unknown (80) */
    const char *cwd;           /* relative paths are made absolute against it */
    const char *socket;        /* --socket, or NULL for the default */
    int json;                  /* --json */
    volatile sig_atomic_t watching;    /* set while a watch runs (main's SIGINT) */
    volatile sig_atomic_t interrupted; /* set by main's SIGINT handler */
    int refused;               /* the daemon's error code for the last request it
                                  refused (0: the last one succeeded) */
} vt_cli;

/* Runs "vggtune ARGS..." (argv[0] is the program) and returns the exit
 * status. */
int vt_cli_main(vt_cli *cli, int argc, char **argv);

/* ---- options (args.c) -------------------------------------------------- */

typedef struct {
    const char *name;  /* long name without "--" */
    char short_name;   /* 0: none */
    int has_arg;
    int id;            /* > 0 */
} vt_cli_opt;

typedef struct {
    int argc;
    char **argv;
    int i;             /* next argument */
    int only_pos;      /* after "--" */
} vt_cli_args;

/* Starts reading argv[first..argc). */
void vt_cli_args_init(vt_cli_args *a, int argc, char **argv, int first);

#define VT_CLI_END (-1000) /* vt_cli_next: no arguments left */

/* The next argument: an option's id (its value in *val when it takes one),
 * 0 for a positional argument (in *val), VT_CLI_END, or VT_EINVAL for an
 * unknown option or a missing value (message set).  "--opt=value",
 * "--opt value", "-x value" and "--" are understood; options and
 * positionals may be mixed. */
int vt_cli_next(vt_cli_args *a, const vt_cli_opt *opts, const char **val);

/* Strict number parsing for option values; VT_EINVAL names the option
 * ("--epochs: 'ten' is not an integer"). */
int vt_cli_parse_int(const char *opt, const char *text, long long *out);
int vt_cli_parse_num(const char *opt, const char *text, double *out);

/* path made absolute against cwd, "." and ".." segments resolved lexically
 * and doubled or trailing slashes removed, as a shell's `cd` does: "x/.."
 * is dropped whether or not x is a symbolic link (a path that must name
 * what the kernel would open goes through realpath too).  malloc'd. */
char *vt_cli_abspath(const char *cwd, const char *path);

/* What `submit` was asked for. */
typedef struct {
    cJSON *doc;   /* the job document to send (paths absolute) */
    int watch;    /* --watch */
    int dry_run;  /* --dry-run: print the document, send nothing */
    int help;     /* --help */
} vt_cli_submit;

/* Builds the job document from submit's arguments (argv[first..argc)):
 * the --spec file, then each flag over it, a default name and output
 * directory, relative paths made absolute against cwd, and the whole
 * checked with vt_jobspec_parse.  Sets cli->json / cli->socket when those
 * options appear.  Returns 0 and fills *s (free with vt_cli_submit_free),
 * VT_EINVAL for a usage error (bad flag or value, two flags that contradict
 * each other, a --spec file that cannot be read or is invalid; the message
 * names the flag, field or file), or VT_ENOMEM. */
int vt_cli_submit_parse(vt_cli_submit *s, vt_cli *cli, int argc, char **argv, int first);

/* Frees what vt_cli_submit_parse put in s (the document; s itself is the
 * caller's) and leaves s->doc NULL, so a second call does nothing. */
void vt_cli_submit_free(vt_cli_submit *s);

/* Checks what it can see cheaply of the document's input paths, as the user
 * sees them: data.train and data.val are directories, data.train with at
 * least two class folders (its top level only is read), weights and init
 * files start like Keras HDF5 or safetensors (init like safetensors), and
 * the output does not hold a finished job's model (unless overwrite).  So
 * submit refuses a typo at once rather than when the job starts.
 * VT_ENOTFOUND / VT_EINVAL / VT_EFORMAT / VT_EIO with a message naming the
 * flag; VT_EPERM when access is denied (the daemon, which reads as the user
 * with the groups the user database gives, may still be allowed). */
int vt_cli_check_paths(const cJSON *doc);

/* Refuses (VT_EINVAL, with a message) an --init-head source, job `job`
 * whose output folder is `output`, whose model has another number of
 * classes than --data's class folders, as vt_cli_check_paths refuses an
 * --init model (the daemon checks the image size and head layout).  0
 * when it fits or cannot be read (the job says why). */
int vt_cli_check_init_head(const cJSON *doc, long long job, const char *output);


/* ---- exit statuses ----------------------------------------------------- */

/* The exit status for a result rc: 0 when rc is 0, VT_CLI_FAILED when the
 * daemon answered (replied), VT_CLI_UNREACHABLE when it could not be
 * reached or the connection broke. */
int vt_cli_exit_code(int rc, int replied);

/* The exit status for a finished job (watch): 0 only for "succeeded". */
int vt_cli_job_exit(const cJSON *job);

/* ---- rendering (render.c) ---------------------------------------------- */

/* "56.2 MiB" */
void vt_cli_fmt_bytes(double bytes, char *buf, size_t len);

/* An ISO-8601 UTC time ("2026-11-27T23:00:00Z") as local
 * "2026-11-27 23:00"; "-" for NULL/null; unparseable text as it is. */
void vt_cli_fmt_time(const cJSON *iso, char *buf, size_t len);

/* The jobs table of `list`. */
void vt_cli_render_list(FILE *f, const cJSON *jobs);

/* One job in detail (`status JOB`): fields, spec summary, epoch table. */
void vt_cli_render_job(FILE *f, const cJSON *job);

/* The daemon's status (`status`). */
void vt_cli_render_status(FILE *f, const cJSON *daemon);

/* predict's reply; shown[i] (may be NULL) replaces the i-th image's path
 * with what the user typed. */
void vt_cli_render_predictions(FILE *f, const cJSON *predictions, char *const *shown,
                               int nshown);

/* Follows a watch stream and prints it. */
typedef struct {
    FILE *out, *err;
    int tty, width;
    int quiet;          /* --json: track the stream, print only failures */
    int64_t job;        /* the job watched */
    int epochs;         /* its total epochs, once known */
    char name[160];     /* "42 (flowers)" */
    char state[32];     /* last state printed */
    int live;           /* a progress line is on screen */
    cJSON *final;       /* the end event's job (owned) */
} vt_cli_watcher;

/* Starts watching job: progress and epochs go to out, warnings and failures
 * to err; tty says out is a terminal width columns wide (a live progress
 * line then). */
void vt_cli_watcher_init(vt_cli_watcher *w, FILE *out, FILE *err, int tty, int width,
                         int64_t job);

/* Frees w->final; w may be initialised again. */
void vt_cli_watcher_free(vt_cli_watcher *w);

/* Prints one message of the stream.  Returns 1 when it was the end (the
 * final job then in w->final), 0 to go on, or VT_EPROTO for an error reply
 * (message set). */
int vt_cli_watcher_feed(vt_cli_watcher *w, const cJSON *msg);

/* Clears the live line, if any. */
void vt_cli_watcher_clear(vt_cli_watcher *w);

/* The final line of a finished job: to out for success ("job 42 (flowers)
 * succeeded ..."), to err as "vggtune: job 42 (flowers) failed: reason"
 * otherwise.  Returns the exit status. */
int vt_cli_watcher_finish(vt_cli_watcher *w);

#endif

/* commands.c - vggtune's commands (see cli.h): each parses its options,
 * connects, sends one request (watch: reads the stream), renders the reply
 * and returns the exit status.
 *
 * Every failure ends in one "vggtune: ..." line on the error stream that
 * says the cause, and an exit status that tells scripts which kind of
 * failure it was: 1 the daemon said no (or the watched job did not
 * succeed), 2 the command line was wrong, 3 the daemon could not be reached;
 * and 130 (128 + SIGINT, what a shell reports for Ctrl-C) when Ctrl-C ends a
 * watch, which is not a failure: the job goes on.
 */
#include "cli.h"

#include <grp.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/error.h"
#include "../proto/proto.h"
#include "../proto/report.h"

/* How often a watch looks at the interrupt flag while the stream is quiet. */
#define VT__WATCH_TICK_MS 250

/* Takes a progress line of predict or eval off the terminal. */
static void vt__clear_line(vt_cli *cli)
{
    if (cli->line_open) {
        fputs("\r\033[K", cli->out);
        fflush(cli->out);
        cli->line_open = 0;
    }
}

static void vt__msg(vt_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vt__msg(vt_cli *cli, const char *fmt, ...)
{
    va_list ap;
    vt__clear_line(cli);
    fputs("vggtune: ", cli->err);
    va_start(ap, fmt);
    vfprintf(cli->err, fmt, ap);
    va_end(ap);
    fputc('\n', cli->err);
    fflush(cli->err);
}

/* A usage error: the message and where to read more.  Returns 2. */
static int vt__usage(vt_cli *cli, const char *cmd, const char *msg)
{
    fprintf(cli->err, "vggtune: %s%s%s\nTry 'vggtune%s%s --help'.\n", cmd ? cmd : "",
            cmd ? ": " : "", msg, cmd ? " " : "", cmd ? cmd : "");
    fflush(cli->err);
    return VT_CLI_USAGE;
}

static void vt__print_json(vt_cli *cli, const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (s) {
        fprintf(cli->out, "%s\n", s);
        fflush(cli->out);
    }
    free(s);
}

/* ---- help -------------------------------------------------------------- */

static const char vt__help_main[] =
    "usage: vggtune [--socket PATH] [--json] COMMAND [ARGS]\n"
    "\n"
    "Trains VGG16 on your images with the vggtuned daemon.\n"
    "\n"
    "commands:\n"
    "  submit --data DIR [options]   submit a training job (--watch to follow it)\n"
    "  list [--all]                  your jobs and the queue\n"
    "  status [JOB]                  the daemon (device, memory, queue, users) or one job\n"
    "  watch JOB                     follow a job: progress, epochs, the result\n"
    "  cancel JOB                    cancel a queued or running job\n"
    "  predict JOB IMAGE... [--top K]  classify images with a job's model\n"
    "  eval JOB DIR                  accuracy of a job's model on a labelled folder\n"
    "\n"
    "options (also accepted after the command):\n"
    "  --socket PATH   the daemon's socket; default $VGGTUNE_SOCKET, else\n"
    "                  $XDG_RUNTIME_DIR/vggtune.sock if it exists, else\n"
    "                  /tmp/vggtune-UID.sock if it is a socket of yours, else\n"
    "                  /run/vggtune/vggtune.sock\n"
    "  --json          print the daemon's replies (and --version) as JSON, one\n"
    "                  object per line\n"
    "  -h, --help      this text; 'vggtune COMMAND --help' for a command\n"
    "  -V, --version   print the version (and the protocol's)\n"
    "\n"
    "exit status: 0 success; 1 the operation failed (for watch: the job failed or\n"
    "was cancelled); 2 usage error; 3 vggtuned cannot be reached; 130 Ctrl-C stopped\n"
    "watch or submit --watch (the job goes on).\n";

static const char vt__help_submit[] =
    "usage: vggtune submit --data DIR [options]\n"
    "       vggtune submit --spec JOB.json [options]\n"
    "\n"
    "Submits a training job and prints its number.  Relative paths are taken from\n"
    "the current directory.  The job document is checked here first, and so are\n"
    "the paths as far as that is cheap (the data folders exist and --data has at\n"
    "least two class folders, not only train/ and val/, --val has the same class\n"
    "folders, the weights files look like weights, an --init model fits the job's\n"
    "image size, head and classes, the output is a folder, not inside the data,\n"
    "and holds no finished job's model unless --overwrite): such a mistake is\n"
    "refused with exit status 2 before the job is queued, as is one that only the\n"
    "daemon sees (a --dense that contradicts --init-head's job).  What only the\n"
    "job finds fails the job, with the reason (no readable image at all), or is\n"
    "reported in its log (unreadable or corrupt images are skipped; a class\n"
    "folder without readable images stays a class, with a warning).\n"
    "\n"
    "data:\n"
    "  -d, --data DIR          training images, one sub-folder per class (required)\n"
    "      --val DIR           validation images, same layout\n"
    "      --val-split F       or hold out this fraction of the training images\n"
    "      --image-size N      input size, a multiple of 32 (default 224)\n"
    "      --preprocess P      auto (follow the weights), torch or caffe\n"
    "model:\n"
    "  -m, --mode M            bottleneck: a head on frozen features; finetune: block 5\n"
    "                          and the head (default); scratch: every layer\n"
    "      --trainable-blocks N  0..5 trainable conv blocks (0 bottleneck, 1 finetune)\n"
    "      --weights FILE      VGG16 weights, Keras .h5 or .safetensors (default:\n"
    "                          the daemon's resident trunk, 'vggtune status' names\n"
    "                          it; random He initialisation unless it was given\n"
    "                          weights)\n"
    "      --init FILE         start the trained layers from a model file of ours\n"
    "      --init-head JOB     start the head from a finished job of yours (a\n"
    "                          bottleneck run), and the blocks both jobs train;\n"
    "                          its head layout is taken, not its dropout\n"
    "      --dense W,W,...     hidden layers of the head (default 1024,128; bottleneck\n"
    "                          256), or 'none'\n"
    "      --dropout F         dropout after each hidden layer\n"
    "training:\n"
    "  -e, --epochs N          (default 10)\n"
    "  -b, --batch-size N      (default 32)\n"
    "      --lr F              learning rate (default 0.001; SGD, momentum 0.9, Nesterov)\n"
    "      --schedule S        learning-rate schedule: none (default), step (x0.1\n"
    "                          every 10 epochs), step:EPOCHS[:GAMMA], cosine (to 0)\n"
    "                          or cosine:MIN_LR\n"
    "      --momentum F        SGD momentum (default 0.9)\n"
    "      --weight-decay F    L2 penalty on the trained weights (default 0)\n"
    "      --precision P       auto, fp32 or bf16\n"
    "      --seed N            (default 1)\n"
    "      --flip              random horizontal flips\n"
    "      --crop F            random crops, zooming up to 1+F (at most 0.5)\n"
    "      --keep-best         keep the epoch with the lowest validation loss\n"
    "      --patience N        stop after N epochs without improvement\n"
    "job:\n"
    "  -n, --name NAME         (default: the data folder's name, or its parent's when\n"
    "                          it is called train: ~/flowers/train -> flowers)\n"
    "  -o, --out DIR           where the model and metrics go (default: ./runs/NAME,\n"
    "                          or ./runs/NAME-2, -3, ... when that exists)\n"
    "      --overwrite         let this job take over a directory that holds a\n"
    "                          finished job's model (that model waits in\n"
    "                          DIR/.vggtune-replaced until this job succeeds, and is\n"
    "                          put back if it fails or is cancelled)\n"
    "      --spec FILE         a whole job document (README.md, 'Job specification');\n"
    "                          the flags above override its fields\n"
    "  -w, --watch             then follow the job as 'vggtune watch' does (its exit\n"
    "                          status; 130 when Ctrl-C stops watching)\n"
    "      --dry-run           print the job document instead of submitting it\n"
    "      --json, --socket PATH, -h/--help\n";

static const char vt__help_list[] =
    "usage: vggtune list [--all]\n"
    "\n"
    "Lists your jobs - number, owner, name, state, epoch, progress or result,\n"
    "submission time - and the queued and running jobs of other users (only their\n"
    "number, owner, state and queue position unless you are an administrator).\n"
    "--all: administrators also see other users' finished jobs.\n";

static const char vt__help_status[] =
    "usage: vggtune status [JOB]\n"
    "\n"
    "Without JOB: the daemon's backend, device, memory, resident VGG16 trunks,\n"
    "queue and each user's share of the device.  With JOB: that job in detail\n"
    "with a table of its finished epochs.\n";

static const char vt__help_watch[] =
    "usage: vggtune watch JOB\n"
    "\n"
    "Follows a job until it ends.  It first shows what the job has logged so far\n"
    "(its latest 100 messages: skipped images and other warnings), so watching a\n"
    "job that has ended shows its log.  On a terminal: a progress line updated in\n"
    "place and a line per finished epoch; otherwise one line per epoch and log\n"
    "message.  Exits 0 when the job succeeded, 1 when it failed or was cancelled.\n"
    "Ctrl-C stops watching, with exit status 130; the job goes on.\n";

static const char vt__help_cancel[] =
    "usage: vggtune cancel JOB\n"
    "\n"
    "Cancels a queued or running job.  A running job stops after its current step,\n"
    "or once the files it is writing are written (which may take a while on a\n"
    "slow file system).  A job whose final model was being written when the\n"
    "cancel came finishes instead: that is said, with exit status 1.\n";

static const char vt__help_predict[] =
    "usage: vggtune predict JOB IMAGE... [--top K]\n"
    "\n"
    "Classifies images with a finished job's model and prints the K most likely\n"
    "classes of each with their probabilities (default K = 3).  Any number of\n"
    "images: more than 1024 go to the daemon in several requests; --json prints\n"
    "them as one reply, with every class's probability and logit.  An image that\n"
    "cannot be read is reported as such and the others are still classified; the\n"
    "exit status is then 1.  A symbolic link named here is followed.\n";

static const char vt__help_eval[] =
    "usage: vggtune eval JOB DIR\n"
    "\n"
    "Evaluates a finished job's model on DIR (one sub-folder per class, named as in\n"
    "training): accuracy, loss, per-class precision and recall, confusion matrix\n"
    "(past 24 classes, the ten most frequent confusions; --json has the matrix).\n"
    "DIR may be a symbolic link; links inside it are skipped.\n";

/* ---- shared pieces ----------------------------------------------------- */

enum { C_HELP = 1, C_JSON, C_SOCKET, C_ALL, C_TOP };

#define VT__COMMON_OPTS                                                        \
    {"help", 'h', 0, C_HELP}, {"json", 0, 0, C_JSON}, {"socket", 0, 1, C_SOCKET}

typedef struct {
    int help, all;
    long long top;
    int npos;
    char **pos; /* positionals, in order */
} vt__parsed;

/* Parses a simple command's options.  Returns 0, or the usage error's exit
 * status (message printed). */
static int vt__parse(vt_cli *cli, const char *cmd, const vt_cli_opt *opts, int argc,
                     char **argv, int first, vt__parsed *p)
{
    vt_cli_args a;
    const char *val = NULL;
    int id;

    memset(p, 0, sizeof *p);
    p->top = 3;
    if (!(p->pos = calloc((size_t)argc + 1, sizeof *p->pos))) {
        vt__msg(cli, "out of memory");
        return VT_CLI_FAILED;
    }
    vt_cli_args_init(&a, argc, argv, first);
    while ((id = vt_cli_next(&a, opts, &val)) != VT_CLI_END) {
        switch (id) {
        case 0: p->pos[p->npos++] = (char *)val; break;
        case C_HELP: p->help = 1; break;
        case C_JSON: cli->json = 1; break;
        case C_SOCKET: cli->socket = val; break;
        case C_ALL: p->all = 1; break;
        case C_TOP:
            if (vt_cli_parse_int("--top", val, &p->top) < 0 || p->top < 1 ||
                p->top > VT_PROTO_TOP_MAX) {
                char msg[64];
                snprintf(msg, sizeof msg, "--top must be from 1 to %d", VT_PROTO_TOP_MAX);
                free(p->pos);
                return vt__usage(cli, cmd, p->top < 1 || p->top > VT_PROTO_TOP_MAX
                                               ? msg : vt_error_msg());
            }
            break;
        default:
            free(p->pos);
            return vt__usage(cli, cmd, vt_error_msg());
        }
    }
    return 0;
}

/* A job number argument. */
static int vt__job_arg(vt_cli *cli, const char *cmd, const char *text, int64_t *job)
{
    long long v;
    char msg[256];
    if (text[0] == '#')
        text++;
    if (vt_cli_parse_int("JOB", text, &v) < 0 || v < 1) {
        snprintf(msg, sizeof msg, "'%s' is not a job number", text);
        return vt__usage(cli, cmd, msg);
    }
    *job = v;
    return 0;
}

/* How long a request may go unanswered before the client says why. */
#define VT__SLOW_NOTICE_MS 3000

/* Said once when a reply is slow.  The daemon takes predictions and
 * evaluations a batch at a time, in turns with the running jobs of every
 * user (a CPU step can take seconds at large image sizes), and a big
 * request takes its own time even on an idle daemon: the notice says both,
 * since the client cannot tell which it is.  A cancellation is answered
 * once the job has stopped, after the step in progress (a queued job's is
 * immediate).  Nothing else should wait. */
static void vt__slow_notice(void *ud, const cJSON *what)
{
    vt_cli *cli = ud;
    const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(what, "op"));

    if (op && !strcmp(op, "predict"))
        vt__msg(cli, "waiting for vggtuned: it classifies the images a batch at a time, in "
                "turns with the running jobs, and many images take a while");
    else if (op && !strcmp(op, "eval"))
        vt__msg(cli, "waiting for vggtuned: it evaluates the folder a batch at a time, in "
                "turns with the running jobs, and a large folder takes a while");
    else if (op && !strcmp(op, "cancel"))
        vt__msg(cli, "waiting for vggtuned: a running job stops when its device ends the "
                "step (or other work) in progress, and the cancellation is answered then");
    else
        vt__msg(cli, "waiting for vggtuned to answer");
}

/* vt_client_on_event's call: a predict's or eval's progress, as a live
 * line on a terminal (not with --json). */
static void vt__req_event(void *ud, const cJSON *msg)
{
    vt_cli *cli = ud;
    char line[512];
    const cJSON *event = cJSON_GetObjectItemCaseSensitive(msg, "event");
    if (!cli->tty || cli->json || !cJSON_IsString(event) || strcmp(event->valuestring, "progress"))
        return;
    vt_report_progress(line, sizeof line, cJSON_GetObjectItemCaseSensitive(msg, "progress"),
                       cli->width);
    fprintf(cli->out, "\r\033[K%s", line);
    fflush(cli->out);
    cli->line_open = 1;
}

/* Connects to the daemon.  Returns 0, VT_CLI_FAILED when the daemon
 * answered but refused (a connection limit), else VT_CLI_UNREACHABLE
 * (printed). */
static int vt__open(vt_cli *cli, vt_client **c)
{
    char def[4096];
    const char *path = cli->socket ? cli->socket : vt_proto_default_socket(def, sizeof def);
    int rc = vt_client_connect(c, path, NULL);
    if (rc < 0) {
        vt__msg(cli, "%s", vt_error_msg());
        return rc == VT_EBUSY ? VT_CLI_FAILED : VT_CLI_UNREACHABLE;
    }
    vt_client_printable(*c, !cli->json); /* (--json escapes them) */
    vt_client_on_slow(*c, VT__SLOW_NOTICE_MS, vt__slow_notice, cli);
    vt_client_on_event(*c, vt__req_event, cli);
    return 0;
}

/* Sends req (consumed) and waits for the reply.  Returns 0 with *reply, or
 * the exit status (message printed, and with --json the error reply). */
static int vt__request(vt_cli *cli, vt_client *c, cJSON *req, cJSON **reply)
{
    int rc = vt_client_request(c, req, reply), status;
    vt__clear_line(cli);
    cli->refused = rc < 0 && *reply ? rc : 0;
    if (rc >= 0)
        return 0;
    if (cli->json && *reply)
        vt__print_json(cli, *reply);
    status = vt_cli_exit_code(rc, *reply != NULL);
    if (status == VT_CLI_UNREACHABLE)
        vt__msg(cli, "lost the connection to vggtuned: %s", vt_error_msg());
    else
        vt__msg(cli, "%s", vt_error_msg());
    cJSON_Delete(*reply);
    *reply = NULL;
    return status;
}

/* vt__request, and with --json the reply printed. */
static int vt__call(vt_cli *cli, vt_client *c, cJSON *req, cJSON **reply)
{
    int status = vt__request(cli, c, req, reply);
    if (status == 0 && cli->json)
        vt__print_json(cli, *reply);
    return status;
}

/* {"op": op, "job": job} */
static cJSON *vt__job_req(const char *op, int64_t job)
{
    cJSON *r = cJSON_CreateObject();
    if (r) {
        cJSON_AddStringToObject(r, "op", op);
        cJSON_AddNumberToObject(r, "job", (double)job);
    }
    return r;
}

/* Follows the watch stream of job.  Returns the exit status. */
static int vt__watch(vt_cli *cli, vt_client *c, int64_t job)
{
    vt_cli_watcher w;
    int64_t id;
    int rc, status = VT_CLI_FAILED;

    if ((rc = vt_client_send(c, vt__job_req("watch", job), &id)) < 0) {
        vt__msg(cli, "%s", vt_error_msg());
        return vt_cli_exit_code(rc, 0);
    }
    vt_cli_watcher_init(&w, cli->out, cli->err, cli->tty, cli->width, job);
    w.quiet = cli->json;
    cli->watching = 1;
    for (;;) {
        cJSON *msg = NULL;
        const cJSON *mid;
        if (cli->interrupted) {
            vt_cli_watcher_clear(&w);
            fflush(cli->out);
            vt__msg(cli, "stopped watching; job %lld goes on ('vggtune cancel %lld' stops it)",
                    (long long)job, (long long)job);
            status = VT_CLI_INTERRUPTED;
            break;
        }
        w.width = cli->width;
        rc = vt_client_read(c, VT__WATCH_TICK_MS, &msg);
        if (rc == 0)
            continue;
        if (rc < 0) {
            vt_cli_watcher_clear(&w);
            fflush(cli->out);
            vt__msg(cli, "lost the connection to vggtuned while watching job %lld: %s (the "
                    "job is not cancelled: it goes on, or resumes once vggtuned is back; "
                    "'vggtune watch %lld' to follow it again)", (long long)job,
                    vt_error_msg(), (long long)job);
            status = VT_CLI_UNREACHABLE;
            break;
        }
        mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
        if (cJSON_IsNumber(mid) && mid->valuedouble != (double)id) {
            cJSON_Delete(msg); /* not ours */
            continue;
        }
        if (cli->json)
            vt__print_json(cli, msg);
        rc = vt_cli_watcher_feed(&w, msg);
        cJSON_Delete(msg);
        if (rc < 0) {
            fflush(cli->out);
            vt__msg(cli, "%s", vt_error_msg());
            status = VT_CLI_FAILED;
            break;
        }
        if (rc == 1) {
            status = vt_cli_watcher_finish(&w);
            break;
        }
    }
    cli->watching = 0;
    vt_cli_watcher_free(&w);
    return status;
}

/* ---- the commands ------------------------------------------------------ */

/* Refuses (VT_EINVAL) a document whose --init-head job's model does not
 * fit it (vt_cli_check_init_head), found from the job's output folder as
 * the daemon tells it; 0 when it fits, or when the daemon does not say
 * (no such job, another user's: the submit's reply says why). */
static int vt__init_head_fits(vt_client *c, const cJSON *doc)
{
    long long id = vt_json_int(doc, "init_job", 0);
    const char *out;
    cJSON *reply = NULL;
    int rc = 0;
    if (id <= 0)
        return 0;
    if (vt_client_request(c, vt__job_req("job", id), &reply) == 0 &&
        (out = vt_json_str(cJSON_GetObjectItemCaseSensitive(reply, "job"), "output")))
        rc = vt_cli_check_init_head(doc, id, out);
    cJSON_Delete(reply);
    return rc;
}

static int vt__cmd_submit(vt_cli *cli, int argc, char **argv, int first)
{
    vt_cli_submit s;
    vt_client *c = NULL;
    cJSON *req = NULL, *reply = NULL;
    const cJSON *job, *idv;
    int64_t id;
    int rc, status;

    if ((rc = vt_cli_submit_parse(&s, cli, argc, argv, first)) < 0) {
        if (rc == VT_EINVAL)
            return vt__usage(cli, "submit", vt_error_msg());
        vt__msg(cli, "%s", vt_error_msg());
        return VT_CLI_FAILED;
    }
    if (s.help) {
        fputs(vt__help_submit, cli->out);
        return VT_CLI_OK;
    }
    /* What is certainly wrong is refused; a permission denied here only
     * warns, since the daemon reads as us with the groups the user database
     * gives, which a login shell may not have yet.  --dry-run prints the
     * document whatever files it names, with the same words as warnings
     * (what the document itself contradicts, such as an output inside the
     * data, is refused before this, dry run or not). */
    if ((rc = vt_cli_check_paths(s.doc)) < 0) {
        if (rc != VT_EPERM && !s.dry_run) {
            vt_cli_submit_free(&s);
            return vt__usage(cli, "submit", vt_error_msg());
        }
        vt__msg(cli, "warning: %s; the job will fail unless that changes", vt_error_msg());
    }
    if (s.dry_run) {
        char *text = cli->json ? cJSON_PrintUnformatted(s.doc) : cJSON_Print(s.doc);
        fprintf(cli->out, "%s\n", text ? text : "null");
        free(text);
        vt_cli_submit_free(&s);
        return VT_CLI_OK;
    }
    if ((status = vt__open(cli, &c)) != 0) {
        vt_cli_submit_free(&s);
        return status;
    }
    if ((rc = vt__init_head_fits(c, s.doc)) < 0) {
        vt_cli_submit_free(&s);
        vt_client_close(c);
        return vt__usage(cli, "submit", vt_error_msg());
    }
    if ((req = cJSON_CreateObject())) {
        cJSON_AddStringToObject(req, "op", "submit");
        cJSON_AddItemToObject(req, "job", s.doc);
        s.doc = NULL;
    }
    vt_cli_submit_free(&s);
    if ((status = vt__call(cli, c, req, &reply)) != 0) {
        /* (a document the daemon alone can judge invalid, such as a head
         * layout that contradicts --init-head's job: a usage error) */
        if (cli->refused == VT_EINVAL)
            status = VT_CLI_USAGE;
        goto done;
    }
    job = cJSON_GetObjectItemCaseSensitive(reply, "job");
    idv = cJSON_GetObjectItemCaseSensitive(job, "id");
    /* (a number not below 2^53 is no job number: converting it to int64_t
     * could be undefined) */
    if (!cJSON_IsNumber(idv) || !(fabs(idv->valuedouble) < 9007199254740992.0)) {
        vt__msg(cli, "vggtuned accepted the job but did not say its number");
        status = VT_CLI_FAILED;
        goto done;
    }
    id = (int64_t)idv->valuedouble;
    if (!cli->json) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(job, "name");
        if (cJSON_IsString(name))
            fprintf(cli->out, "submitted job %lld (%s)\n", (long long)id, name->valuestring);
        else
            fprintf(cli->out, "submitted job %lld\n", (long long)id);
        fflush(cli->out);
    }
    if (s.watch)
        status = vt__watch(cli, c, id);
done:
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

static int vt__cmd_list(vt_cli *cli, int argc, char **argv, int first)
{
    static const vt_cli_opt opts[] = {VT__COMMON_OPTS, {"all", 'a', 0, C_ALL}, {0}};
    vt__parsed p;
    vt_client *c = NULL;
    cJSON *req, *reply = NULL;
    const cJSON *jobs;
    int status;

    if ((status = vt__parse(cli, "list", opts, argc, argv, first, &p)) != 0)
        return status;
    if (p.help) {
        fputs(vt__help_list, cli->out);
        goto done;
    }
    if (p.npos) {
        status = vt__usage(cli, "list", "takes no arguments");
        goto done;
    }
    if ((status = vt__open(cli, &c)) != 0)
        goto done;
    if ((req = cJSON_CreateObject())) {
        cJSON_AddStringToObject(req, "op", "list");
        cJSON_AddBoolToObject(req, "all", p.all);
    }
    if ((status = vt__call(cli, c, req, &reply)) != 0 || cli->json)
        goto done;
    jobs = cJSON_GetObjectItemCaseSensitive(reply, "jobs");
    if (cJSON_GetArraySize(jobs) == 0)
        fprintf(cli->out, p.all ? "no jobs\n"
                                : "no jobs of yours, and no queued or running ones of "
                                  "others (administrators: 'vggtune list --all' shows "
                                  "finished ones too)\n");
    else
        vt_cli_render_list(cli->out, jobs);
done:
    free(p.pos);
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

static int vt__cmd_status(vt_cli *cli, int argc, char **argv, int first)
{
    static const vt_cli_opt opts[] = {VT__COMMON_OPTS, {0}};
    vt__parsed p;
    vt_client *c = NULL;
    cJSON *req, *reply = NULL;
    int64_t job = 0;
    int status;

    if ((status = vt__parse(cli, "status", opts, argc, argv, first, &p)) != 0)
        return status;
    if (p.help) {
        fputs(vt__help_status, cli->out);
        goto done;
    }
    if (p.npos > 1) {
        status = vt__usage(cli, "status", "give at most one job number");
        goto done;
    }
    if (p.npos && (status = vt__job_arg(cli, "status", p.pos[0], &job)) != 0)
        goto done;
    if ((status = vt__open(cli, &c)) != 0)
        goto done;
    if (job)
        req = vt__job_req("job", job);
    else if ((req = cJSON_CreateObject()))
        cJSON_AddStringToObject(req, "op", "status");
    if ((status = vt__call(cli, c, req, &reply)) != 0 || cli->json)
        goto done;
    if (job)
        vt_cli_render_job(cli->out, cJSON_GetObjectItemCaseSensitive(reply, "job"));
    else
        vt_cli_render_status(cli->out, cJSON_GetObjectItemCaseSensitive(reply, "daemon"));
done:
    free(p.pos);
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

/* The commands that take exactly one JOB. */
static int vt__one_job(vt_cli *cli, const char *cmd, const char *help, int argc, char **argv,
                       int first, int64_t *job)
{
    static const vt_cli_opt opts[] = {VT__COMMON_OPTS, {0}};
    vt__parsed p;
    int status;

    *job = 0;
    if ((status = vt__parse(cli, cmd, opts, argc, argv, first, &p)) != 0)
        return status;
    if (p.help) {
        fputs(help, cli->out);
        free(p.pos);
        return -1;
    }
    if (p.npos != 1)
        status = vt__usage(cli, cmd, p.npos ? "give one job number" : "which job?");
    else
        status = vt__job_arg(cli, cmd, p.pos[0], job);
    free(p.pos);
    return status;
}

static int vt__cmd_watch(vt_cli *cli, int argc, char **argv, int first)
{
    vt_client *c = NULL;
    int64_t job;
    int status = vt__one_job(cli, "watch", vt__help_watch, argc, argv, first, &job);

    if (status)
        return status < 0 ? VT_CLI_OK : status;
    if ((status = vt__open(cli, &c)) != 0)
        return status;
    status = vt__watch(cli, c, job);
    vt_client_close(c);
    return status;
}

/* The daemon answers a cancel that came while a job's final model was being
 * written once the job has ended, and that job may have succeeded (or
 * failed) all the same.  Says so and returns 1 when job j (labelled label)
 * ended that way, else returns 0. */
static int vt__ended_before_cancel(vt_cli *cli, const cJSON *j, const char *label,
                                   const char *state)
{
    const char *output = vt_json_str(j, "output"), *error = vt_json_str(j, "error");
    if (strcmp(state, "succeeded") == 0) {
        vt__msg(cli, "job %s was not cancelled: it finished first and succeeded%s%s", label,
                output ? ", output in " : "", output ? output : "");
        return 1;
    }
    if (strcmp(state, "failed") == 0) {
        vt__msg(cli, "job %s was not cancelled: it failed first%s%s", label,
                error ? ": " : "", error ? error : "");
        return 1;
    }
    return 0;
}

/* What a running job whose cancel is under way still does before it stops,
 * by its phase (progress.phase of the reply; NULL when it has none). */
static const char *vt__cancel_pending(const char *phase)
{
    if (phase && strcmp(phase, "saving") == 0)
        return "it is writing its files and stops once they are written, which may take a "
               "while on a slow file system (a final model written by then is kept, and the "
               "job succeeds)";
    if (phase && strcmp(phase, "preparing") == 0)
        return "it stops once the preparation under way (its output folder, data or "
               "parameters) returns";
    return "it stops after its current step";
}

static int vt__cmd_cancel(vt_cli *cli, int argc, char **argv, int first)
{
    vt_client *c = NULL;
    cJSON *reply = NULL;
    const cJSON *j;
    const char *state;
    char label[192];
    int64_t job;
    int status = vt__one_job(cli, "cancel", vt__help_cancel, argc, argv, first, &job);

    if (status)
        return status < 0 ? VT_CLI_OK : status;
    if ((status = vt__open(cli, &c)) != 0)
        return status;
    if ((status = vt__call(cli, c, vt__job_req("cancel", job), &reply)) != 0 || cli->json)
        goto done;
    j = cJSON_GetObjectItemCaseSensitive(reply, "job");
    state = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "state"))
                ? cJSON_GetObjectItemCaseSensitive(j, "state")->valuestring
                : "?";
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "name")))
        snprintf(label, sizeof label, "%lld (%s)", (long long)job,
                 cJSON_GetObjectItemCaseSensitive(j, "name")->valuestring);
    else
        snprintf(label, sizeof label, "%lld", (long long)job);
    if (strcmp(state, "cancelled") == 0)
        fprintf(cli->out, "cancelled job %s\n", label);
    else if (vt__ended_before_cancel(cli, j, label, state))
        status = VT_CLI_FAILED;
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "cancel_requested")))
        fprintf(cli->out, "cancelling job %s: %s\n", label,
                vt__cancel_pending(vt_json_str(cJSON_GetObjectItemCaseSensitive(j, "progress"),
                                               "phase")));
    else
        fprintf(cli->out, "job %s is %s\n", label, state);
done:
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

/* The path to send for a file or folder the user named on the command line.
 * The daemon opens an image without following a symbolic link (a link in a
 * data folder may point anywhere), but a link the user typed is the user's
 * own choice, and the client runs as the user: so it is resolved here, as
 * the kernel resolves it ("link/.." included).  When that fails (no such
 * file, a folder we may not search) the absolute path is sent and the
 * daemon reports the error in its words.  malloc'd; NULL when out of
 * memory. */
static char *vt__user_path(const char *cwd, const char *path)
{
    size_t n = strlen(cwd) + strlen(path) + 2;
    char *joined = malloc(n), *real;

    if (!joined)
        return NULL;
    snprintf(joined, n, "%s%s%s", path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/", path);
    real = realpath(joined, NULL);
    free(joined);
    return real ? real : vt_cli_abspath(cwd, path);
}

/* Bytes s takes as a JSON string, quotes included (cJSON's escaping). */
static size_t vt__json_strlen(const char *s)
{
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '\b' || *p == '\f' || *p == '\n' || *p == '\r' ||
            *p == '\t')
            n += 2;
        else
            n += *p < 0x20 ? 6 : 1; /* \u00XX */
    }
    return n;
}

/* The predict request for images[0..n) (n >= 1): as many of them as fit in
 * one request, at most VT_PROTO_MAX_IMAGES and the frame limit (with room
 * for the other fields); *taken says how many.  NULL when out of memory. */
static cJSON *vt__predict_req(int64_t job, int top, char *const *images, int n, int *taken)
{
    cJSON *req = vt__job_req("predict", job), *arr;
    size_t bytes = 256;
    int k = 0;

    if (!req || !(arr = cJSON_AddArrayToObject(req, "images")) ||
        !cJSON_AddNumberToObject(req, "top", (double)top)) {
        cJSON_Delete(req);
        return NULL;
    }
    while (k < n && k < VT_PROTO_MAX_IMAGES) {
        bytes += vt__json_strlen(images[k]) + 1;
        if (k > 0 && bytes > VT_PROTO_MAX_FRAME)
            break;
        if (!cJSON_AddItemToArray(arr, cJSON_CreateString(images[k]))) {
            cJSON_Delete(req);
            return NULL;
        }
        k++;
    }
    *taken = k;
    return req;
}

/* Predicts in requests of at most VT_PROTO_MAX_IMAGES images (the daemon's
 * limit per request) and shows the results as one: the text in the order
 * of the images, or with --json the first reply with every request's
 * predictions appended to its own.  A failing request ends the command. */
static int vt__cmd_predict(vt_cli *cli, int argc, char **argv, int first)
{
    static const vt_cli_opt opts[] = {VT__COMMON_OPTS, {"top", 'k', 1, C_TOP}, {0}};
    vt__parsed p;
    vt_client *c = NULL;
    cJSON *req, *reply = NULL, *all = NULL;
    char **images = NULL;
    int64_t job = 0;
    int status, n, done = 0;

    if ((status = vt__parse(cli, "predict", opts, argc, argv, first, &p)) != 0)
        return status;
    if (p.help) {
        fputs(vt__help_predict, cli->out);
        goto done;
    }
    if (p.npos < 2) {
        status = vt__usage(cli, "predict", p.npos ? "give at least one image" : "which job?");
        goto done;
    }
    if ((status = vt__job_arg(cli, "predict", p.pos[0], &job)) != 0)
        goto done;
    n = p.npos - 1;
    if (!(images = calloc((size_t)n, sizeof *images))) {
        vt__msg(cli, "out of memory");
        status = VT_CLI_FAILED;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!(images[i] = vt__user_path(cli->cwd, p.pos[i + 1]))) {
            vt__msg(cli, "out of memory");
            status = VT_CLI_FAILED;
            goto done;
        }
    }
    if ((status = vt__open(cli, &c)) != 0)
        goto done;
    while (done < n) {
        cJSON *preds, *into, *it;
        int taken = 0;
        if (!(req = vt__predict_req(job, p.top, images + done, n - done, &taken))) {
            vt__msg(cli, "out of memory");
            status = VT_CLI_FAILED;
            goto done;
        }
        if ((status = vt__request(cli, c, req, &reply)) != 0)
            goto done;
        done += taken;
        if (!all) {
            all = reply;
            reply = NULL;
            continue;
        }
        preds = cJSON_GetObjectItemCaseSensitive(reply, "predictions");
        into = cJSON_GetObjectItemCaseSensitive(all, "predictions");
        while (cJSON_IsArray(preds) && cJSON_IsArray(into) && (it = preds->child))
            cJSON_AddItemToArray(into, cJSON_DetachItemViaPointer(preds, it));
        cJSON_Delete(reply);
        reply = NULL;
    }
    if (cli->json)
        vt__print_json(cli, all);
    else
        vt_cli_render_predictions(cli->out, cJSON_GetObjectItemCaseSensitive(all, "predictions"),
                                  p.pos + 1, n);
    {
        const cJSON *it;
        int unread = 0;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(all, "predictions"))
            unread += cJSON_GetObjectItemCaseSensitive(it, "error") != NULL;
        if (unread) {
            vt__msg(cli, "%d of %d image%s could not be read", unread, n, n == 1 ? "" : "s");
            status = VT_CLI_FAILED;
        }
    }
done:
    for (int i = 0; images && i < p.npos - 1; i++)
        free(images[i]);
    free(images);
    free(p.pos);
    cJSON_Delete(all);
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

static int vt__cmd_eval(vt_cli *cli, int argc, char **argv, int first)
{
    static const vt_cli_opt opts[] = {VT__COMMON_OPTS, {0}};
    vt__parsed p;
    vt_client *c = NULL;
    cJSON *req = NULL, *reply = NULL;
    char *abs = NULL;
    int64_t job = 0;
    int status;

    if ((status = vt__parse(cli, "eval", opts, argc, argv, first, &p)) != 0)
        return status;
    if (p.help) {
        fputs(vt__help_eval, cli->out);
        goto done;
    }
    if (p.npos != 2) {
        status = vt__usage(cli, "eval", "give a job number and a folder");
        goto done;
    }
    if ((status = vt__job_arg(cli, "eval", p.pos[0], &job)) != 0)
        goto done;
    if (!(abs = vt__user_path(cli->cwd, p.pos[1])) || !(req = vt__job_req("eval", job))) {
        vt__msg(cli, "out of memory");
        status = VT_CLI_FAILED;
        goto done;
    }
    cJSON_AddStringToObject(req, "data", abs);
    if ((status = vt__open(cli, &c)) != 0)
        goto done;
    status = vt__call(cli, c, req, &reply);
    req = NULL;
    if (status != 0 || cli->json)
        goto done;
    vt_report_eval(cli->out, cJSON_GetObjectItemCaseSensitive(reply, "eval"));
done:
    free(abs);
    cJSON_Delete(req);
    free(p.pos);
    cJSON_Delete(reply);
    vt_client_close(c);
    return status;
}

/* ---- dispatch ---------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(vt_cli *cli, int argc, char **argv, int first);
    const char *help;
} vt__commands[] = {
    {"submit", vt__cmd_submit, vt__help_submit},
    {"list", vt__cmd_list, vt__help_list},
    {"status", vt__cmd_status, vt__help_status},
    {"watch", vt__cmd_watch, vt__help_watch},
    {"cancel", vt__cmd_cancel, vt__help_cancel},
    {"predict", vt__cmd_predict, vt__help_predict},
    {"eval", vt__cmd_eval, vt__help_eval},
};

#define VT__NCOMMANDS (sizeof vt__commands / sizeof vt__commands[0])

/* Prints the client's version and protocol: a line of text, or with --json
 * an object like the daemon's status ({"version": "0.1.0", "protocol": 1}). */
static int vt__print_version(vt_cli *cli)
{
    if (cli->json)
        fprintf(cli->out, "{\"version\":\"%s\",\"protocol\":%d}\n", VT_VERSION,
                VT_PROTO_VERSION);
    else
        fprintf(cli->out, "vggtune %s (protocol %d)\n", VT_VERSION, VT_PROTO_VERSION);
    return VT_CLI_OK;
}

int vt_cli_main(vt_cli *cli, int argc, char **argv)
{
    enum { G_HELP = 1, G_VERSION, G_JSON, G_SOCKET };
    static const vt_cli_opt opts[] = {
        {"help", 'h', 0, G_HELP}, {"version", 'V', 0, G_VERSION}, {"json", 0, 0, G_JSON},
        {"socket", 0, 1, G_SOCKET}, {0}};
    vt_cli_args a;
    const char *val = NULL;
    int id, version = 0;

    vt_cli_args_init(&a, argc, argv, 1);
    while ((id = vt_cli_next(&a, opts, &val)) != VT_CLI_END) {
        switch (id) {
        case 0: break;
        case G_HELP: fputs(vt__help_main, cli->out); return VT_CLI_OK;
        case G_VERSION: version = 1; continue; /* (printed once --json is known) */
        case G_JSON: cli->json = 1; continue;
        case G_SOCKET: cli->socket = val; continue;
        default: return vt__usage(cli, NULL, vt_error_msg());
        }
        break; /* the command */
    }
    if (version)
        return vt__print_version(cli);
    if (id == VT_CLI_END) {
        fputs(vt__help_main, cli->err);
        return VT_CLI_USAGE;
    }
    if (strcmp(val, "help") == 0) {
        if (a.i < argc)
            for (size_t k = 0; k < VT__NCOMMANDS; k++)
                if (strcmp(argv[a.i], vt__commands[k].name) == 0) {
                    fputs(vt__commands[k].help, cli->out);
                    return VT_CLI_OK;
                }
        fputs(vt__help_main, cli->out);
        return VT_CLI_OK;
    }
    for (size_t k = 0; k < VT__NCOMMANDS; k++)
        if (strcmp(val, vt__commands[k].name) == 0)
            return vt__commands[k].run(cli, argc, argv, a.i);
    char msg[256];
    snprintf(msg, sizeof msg, "unknown command '%s'", val);
    return vt__usage(cli, NULL, msg);
}

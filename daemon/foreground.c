/* foreground.c - `vggtuned run`, `predict` and `eval` (see foreground.h).
 *
 * The same engine as the daemon, on the calling user's files, with progress
 * on the terminal: a live line when stderr is a terminal, one line per epoch
 * otherwise.
 */
#include "foreground.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../common/error.h"
#include "../common/fileio.h"
#include "../common/log.h"
#include "../common/pool.h"
#include "../engine/base.h"
#include "../engine/featcache.h"
#include "../engine/loader.h"
#include "../engine/predict.h"
#include "../engine/train.h"
#include "../proto/report.h"
#include "config.h"
#include "jobs.h"

#define VT_SPEC_MAX (1 << 20)

typedef struct {
    const char *backend; /* "auto", "cpu", "cuda" */
    int threads;
} vt__common;

static int vt__make_backend(vt_backend **be, const vt__common *c)
{
    char why[512] = "";
    int rc;
    if (strcmp(c->backend, "auto") == 0)
        rc = vt_backend_create_auto(be, c->threads, why, sizeof why);
    else
        rc = vt_backend_create(be, c->backend, c->threads);
    if (rc < 0)
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
    else /* one line, with why the GPU was passed over when it was */
        vt_log_info("backend %s: %s%s%s%s", vt_backend_name(*be), vt_backend_device(*be),
                    why[0] ? " (no GPU used: " : "", why, why[0] ? ")" : "");
    return rc;
}

/* Parses --backend/--threads; returns 1 when it consumed the option, 0
 * when it is not one of them, -1 (said on stderr) for a bad value. */
static int vt__common_opt(int opt, vt__common *c)
{
    long n;
    if (opt == 'b') {
        c->backend = optarg;
    } else if (opt == 't') {
        if (vt_config_int("--threads", optarg, 0, 1024, &n) < 0) {
            fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
            return -1;
        }
        c->threads = (int)n;
    } else {
        return 0;
    }
    return 1;
}

/* A usage error of `vggtuned cmd`: what getopt found (opt '?' or ':', from
 * a loop with opterr 0 and an option string starting with ':'), or with
 * opt 0 the message `what`; and where the usage is.  Returns 2. */
static int vt__usage_error(const char *cmd, int opt, char *const *argv, const char *what)
{
    /* (getopt names the short option in optopt, and for a long one only
     * where it had it wrong; argv[optind - 1] may be an earlier argument
     * while it is inside a cluster of short options) */
    char shortopt[3] = {'-', (char)optopt, '\0'};
    const char *last = optind > 0 ? argv[optind - 1] : "", *eq = strchr(last, '=');
    int is_long = strncmp(last, "--", 2) == 0;
    if (opt == ':')
        fprintf(stderr, "vggtuned %s: option %s needs a value", cmd, is_long ? last : shortopt);
    else if (opt && optopt && is_long && eq)
        fprintf(stderr, "vggtuned %s: option %.*s takes no value", cmd, (int)(eq - last), last);
    else if (opt)
        fprintf(stderr, "vggtuned %s: unknown option %s", cmd, optopt ? shortopt : last);
    else
        fprintf(stderr, "vggtuned %s: %s", cmd, what);
    fprintf(stderr, " (vggtuned %s --help for its usage)\n", cmd);
    return 2;
}

/* ---- run --------------------------------------------------------------- */

/* The checkpoint's folder must exist and be writable: checked before
 * training rather than found out at the end of the first epoch. */
static int vt__checkpoint_dir_ok(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if (access(dir, W_OK | X_OK) != 0)
        return vt_error_set(VT_EINVAL, "--checkpoint %s: cannot write in %s (%s)", path, dir,
                            strerror(errno));
    return 0;
}

static volatile sig_atomic_t vt__stop;

static void vt__on_signal(int sig)
{
    vt__stop = sig;
}

typedef struct {
    int tty;
    int quiet;
    int epochs; /* the job's, for "epoch 3/10" */
} vt__fg_ui;

/* Columns of the terminal on stderr (0: unknown). */
static int vt__fg_width(void)
{
    struct winsize ws;
    return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

/* The live line, as vggtune watch shows it (while the data is read, epoch
 * 0: "preparing [...] 5/10 image headers read"). */
static void vt__fg_progress(void *ud, const vt_progress *p)
{
    vt__fg_ui *ui = ud;
    char line[512];
    cJSON *o;
    if (!ui->tty || ui->quiet)
        return;
    o = vt_progress_json(p, p->epoch == 0 ? "preparing" : p->phase ? p->phase : "training");
    if (!o)
        return;
    vt_report_progress(line, sizeof line, o, vt__fg_width());
    cJSON_Delete(o);
    fprintf(stderr, "\r\033[K%s", line);
}

static void vt__fg_epoch(void *ud, const vt_epoch_metrics *m)
{
    vt__fg_ui *ui = ud;
    char line[512];
    cJSON *o = vt_epoch_metrics_json(m);
    if (ui->tty && !ui->quiet)
        fprintf(stderr, "\r\033[K");
    if (!o)
        return;
    vt_report_epoch(line, sizeof line, o, ui->epochs);
    cJSON_Delete(o);
    printf("%s\n", line);
    fflush(stdout);
}

static void vt__fg_message(void *ud, vt_log_level level, const char *text)
{
    vt__fg_ui *ui = ud;
    if (ui->tty && !ui->quiet)
        fprintf(stderr, "\r\033[K");
    vt_log(level, "%s", text);
}

static void vt__run_usage(FILE *f)
{
    fprintf(f,
            "usage: vggtuned run [options] JOB.json\n"
            "Trains one job in the foreground (no daemon, no socket) and writes\n"
            "OUT/model.safetensors, OUT/metrics.jsonl and OUT/classmap.json.\n\n"
            "  -b, --backend B     auto (default: CUDA if a GPU is usable), cpu, cuda\n"
            "  -t, --threads N     CPU threads for the CPU backend and decoding (default or\n"
            "                      0: all cores)\n"
            "  -c, --checkpoint F  checkpoint at every epoch end (and on SIGTERM/SIGINT) to F;\n"
            "                      resume from F when it exists.  F stays after the job\n"
            "                      has finished: the same command then ends at once, and\n"
            "                      with more epochs in the document it goes on from there\n"
            "      --cache-mb N    device memory for the feature caches in MiB (default:\n"
            "                      half of what is free; 0: none on the device)\n"
            "      --host-cache-mb N\n"
            "                      host memory for caches that do not fit the device\n"
            "                      (default: half of what is available with a GPU, 0 with\n"
            "                      the CPU backend)\n"
            "  -q, --quiet         no live progress line\n"
            "  -h, --help          this text\n"
            "The job document is described in README.md, 'Job specification'; relative\n"
            "paths in it are taken from the current directory.\n"
            "Exit status: 0 trained, 1 the job failed, 2 a usage error (an option, or a\n"
            "job document that is missing or wrong), 75 interrupted\n"
            "(SIGINT, SIGTERM, SIGHUP) with the checkpoint written: run the same command\n"
            "again to resume; 130 interrupted without one.\n");
}

/* Device memory not in use now (with the trunk loaded), as the daemon
 * measures it for a job's caches. */
static size_t vt__free_memory(const vt_backend *be)
{
    size_t used = 0, total = vt_backend_memory_total(be);
    vt_backend_memory(be, &used, NULL);
    return total > used ? total - used : 0;
}

int vt_fg_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"backend", required_argument, NULL, 'b'}, {"threads", required_argument, NULL, 't'},
        {"checkpoint", required_argument, NULL, 'c'}, {"quiet", no_argument, NULL, 'q'},
        {"cache-mb", required_argument, NULL, 'm'}, {"host-cache-mb", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    vt__common common = {"auto", 0};
    vt__fg_ui ui = {.tty = isatty(STDERR_FILENO)};
    long cache_mb = -1, host_cache_mb = -1;
    const char *checkpoint = NULL;
    vt_jobspec spec;
    vt_backend *be = NULL;
    vt_pool *pool = NULL;
    vt_base *base = NULL;
    vt_featcache_set *caches = NULL;
    vt_trainer *tr = NULL;
    uint8_t *text = NULL;
    size_t len;
    char cwd[4096];
    int opt, rc, status = 1;

    vt_jobspec_defaults(&spec);
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":b:t:c:qh", opts, NULL)) != -1) {
        if ((rc = vt__common_opt(opt, &common)) != 0) {
            if (rc < 0)
                return 2;
            continue;
        }
        switch (opt) {
        case 'c': checkpoint = optarg; break;
        case 'q': ui.quiet = 1; break;
        case 'm':
        case 'H':
            if (vt_config_int(opt == 'm' ? "--cache-mb" : "--host-cache-mb", optarg, 0,
                              1L << 30, opt == 'm' ? &cache_mb : &host_cache_mb) < 0) {
                fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
                return 2;
            }
            break;
        case 'h': vt__run_usage(stdout); return 0;
        default: return vt__usage_error("run", opt, argv, NULL);
        }
    }
    if (optind != argc - 1)
        return vt__usage_error("run", 0, argv, optind == argc ? "no job document (JOB.json) given"
                                                              : "one job document at a time");
    if (checkpoint && vt__checkpoint_dir_ok(checkpoint) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        return 2;
    }
    /* A document that cannot be read or is wrong is a usage error (2). */
    if ((rc = vt_read_file(argv[optind], VT_SPEC_MAX, &text, &len)) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg()); /* (names the file) */
        status = rc == VT_ENOMEM ? 1 : 2;
        goto done;
    }
    if ((rc = vt_jobspec_parse(&spec, (const char *)text, len)) < 0 ||
        (rc = vt_jobspec_check_utf8(&spec)) < 0 || !getcwd(cwd, sizeof cwd) ||
        (rc = vt_jobspec_absolutize(&spec, cwd)) < 0 ||
        (rc = vt_jobspec_check_output(&spec)) < 0) {
        fprintf(stderr, "vggtuned: %s: %s\n", argv[optind], vt_error_msg());
        status = rc == VT_EINVAL ? 2 : 1;
        goto done;
    }
    ui.epochs = spec.epochs;
    if (spec.init_job) {
        fprintf(stderr, "vggtuned: %s: init_job needs the daemon; give init (a model "
                "file) in the foreground\n", argv[optind]);
        status = 2;
        goto done;
    }
    if (vt__make_backend(&be, &common) < 0)
        goto done;
    if (!(caches = vt_featcache_set_new())) {
        fprintf(stderr, "vggtuned: out of memory\n");
        goto done;
    }
    if ((rc = vt_pool_create(&pool, common.threads)) < 0 ||
        (rc = vt_base_load(&base, be, spec.weights, NULL)) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        goto done;
    }
    vt_trainer_env env = {.be = be, .pool = pool, .trunk = base->trunk, .base = base->params,
                          .base_prep = base->prep, .base_desc = base->desc,
                          .base_random = base->random, .checkpoint = checkpoint,
                          .final_checkpoint = 1,
                          .cache_limit = cache_mb >= 0 ? (size_t)cache_mb << 20
                                                       : vt__free_memory(be) / 2,
                          .host_cache_limit = host_cache_mb >= 0
                                                  ? (size_t)host_cache_mb << 20
                                                  : vt_featcache_host_default(be),
                          .caches = caches, .base_hash = base->hash};
    vt_trainer_hooks hooks = {.progress = vt__fg_progress, .epoch_end = vt__fg_epoch,
                              .message = vt__fg_message, .ud = &ui};
    if ((rc = vt_trainer_create(&tr, &spec, &env, &hooks)) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        goto done;
    }
    signal(SIGTERM, vt__on_signal);
    signal(SIGINT, vt__on_signal);
    signal(SIGHUP, vt__on_signal); /* a closed terminal: checkpoint, then exit */
    while (!vt__stop && (rc = vt_trainer_step(tr)) > 0)
        if (rc == VT_TRAINER_WAITING)
            vt_trainer_wait(tr, 0.2); /* (short: a signal is seen in time) */
    if (ui.tty && !ui.quiet)
        fprintf(stderr, "\r\033[K");
    /* (files under way are waited for: when they settle the job's end - its
     * final model written, or an output that could not be - it ends as it
     * would have without the signal) */
    if (vt__stop && ((rc = vt_trainer_files_written(tr)) < 0 || vt_trainer_done(tr)))
        vt__stop = 0;
    if (vt__stop) {
        /* Still preparing (reading the data): nothing new to save, and an
         * earlier run's checkpoint, when there is one, still holds. */
        int resumable = checkpoint && vt_trainer_prepared(tr);
        if (resumable && vt_trainer_checkpoint(tr) == 0) {
            fprintf(stderr, "vggtuned: interrupted; checkpoint written to %s, run the same "
                    "command again to resume\n", checkpoint);
            status = 75;
        } else if (checkpoint && !resumable && access(checkpoint, F_OK) == 0) {
            fprintf(stderr, "vggtuned: interrupted while preparing; run the same command "
                    "again to resume from %s\n", checkpoint);
            status = 75;
        } else {
            fprintf(stderr, "vggtuned: interrupted%s%s\n", resumable ? ": " : "",
                    resumable ? vt_error_msg() : "");
            if (!resumable) /* nothing to resume: as a cancelled job */
                vt_trainer_discard_output(tr, 1);
            status = 130;
        }
        goto done;
    }
    if (rc < 0) {
        fprintf(stderr, "vggtuned: job '%s' failed: %s\n", spec.name, vt_error_msg());
        vt_trainer_discard_output(tr, 1);
        goto done;
    }
    printf("done: %s/model.safetensors (%d epoch%s)\n", spec.output,
           vt_trainer_epochs_done(tr), vt_trainer_epochs_done(tr) == 1 ? "" : "s");
    status = 0;
done:
    vt_trainer_free(tr);
    vt_featcache_set_free(caches);
    vt_base_free(base);
    vt_pool_free(pool);
    vt_loader_reap(be, 1); /* (loaders let go of with a read stuck) */
    vt_backend_free(be);
    vt_jobspec_free(&spec);
    free(text);
    return status;
}

/* ---- predict ----------------------------------------------------------- */

static void vt__predict_usage(FILE *f)
{
    fprintf(f,
            "usage: vggtuned predict [options] MODEL IMAGE...\n"
            "Classifies images with a model written by a job (OUT/model.safetensors).\n\n"
            "  -k, --top K         classes to show per image (default 3)\n"
            "  -j, --json          JSON output, with every probability and logit\n"
            "  -b, --backend B     auto (default), cpu, cuda\n"
            "  -t, --threads N     CPU threads\n"
            "  -h, --help          this text\n");
}

int vt_fg_predict(int argc, char **argv)
{
    static const struct option opts[] = {
        {"top", required_argument, NULL, 'k'}, {"json", no_argument, NULL, 'j'},
        {"backend", required_argument, NULL, 'b'}, {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    vt__common common = {"auto", 0};
    vt_backend *be = NULL;
    vt_pool *pool = NULL;
    vt_predictor *p = NULL;
    float *probs = NULL, *logits = NULL;
    char **errors = NULL; /* (n): why image i could not be read, or NULL */
    int opt, rc, top = 3, json = 0, status = 1, n = 0, C, unread = 0;
    long v;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":k:jb:t:h", opts, NULL)) != -1) {
        if ((rc = vt__common_opt(opt, &common)) != 0) {
            if (rc < 0)
                return 2;
            continue;
        }
        switch (opt) {
        case 'k':
            if (vt_config_int("--top", optarg, 1, VT_PREDICT_TOP_MAX, &v) < 0) {
                fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
                return 2;
            }
            top = (int)v;
            break;
        case 'j': json = 1; break;
        case 'h': vt__predict_usage(stdout); return 0;
        default: return vt__usage_error("predict", opt, argv, NULL);
        }
    }
    if (argc - optind < 2)
        return vt__usage_error("predict", 0, argv, optind == argc ? "no model and images given"
                                                                  : "no image given");
    n = argc - optind - 1;
    if (vt__make_backend(&be, &common) < 0)
        goto done;
    if (vt_pool_create(&pool, common.threads) < 0 ||
        vt_predictor_load(&p, be, argv[optind], NULL) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        goto done;
    }
    C = vt_predictor_nclasses(p);
    top = top > C ? C : top;
    probs = malloc(sizeof *probs * (size_t)n * C);
    logits = malloc(sizeof *logits * (size_t)n * C);
    errors = calloc((size_t)n, sizeof *errors);
    if (!probs || !logits || !errors ||
        vt_predictor_run(p, pool, (const char *const *)argv + optind + 1, n, probs, logits,
                         NULL, errors) < 0) {
        fprintf(stderr, "vggtuned: %s\n", probs && logits && errors ? vt_error_msg()
                                                                    : "out of memory");
        goto done;
    }
    cJSON *all = json ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < n; i++) {
        const float *pr = probs + (size_t)i * C;
        unread += errors[i] != NULL;
        if (json) {
            cJSON_AddItemToArray(all, vt_predict_json(p, argv[optind + 1 + i], pr,
                                                      logits + (size_t)i * C, top, errors[i]));
            continue;
        }
        if (errors[i]) {
            printf("%s:  error: %s\n", argv[optind + 1 + i], errors[i]);
            continue;
        }
        int best[VT_PREDICT_TOP_MAX];
        vt_predict_topk(pr, C, top, best);
        printf("%s:", argv[optind + 1 + i]);
        for (int k = 0; k < top; k++)
            printf("  %s %.4f", vt_predictor_class(p, best[k]), pr[best[k]]);
        printf("\n");
    }
    if (json) {
        char *s = cJSON_PrintUnformatted(all);
        printf("%s\n", s ? s : "null");
        free(s);
        cJSON_Delete(all);
    }
    if (unread)
        fprintf(stderr, "vggtuned: %d of %d image%s could not be read\n", unread, n,
                n == 1 ? "" : "s");
    status = unread ? 1 : 0;
done:
    for (int i = 0; errors && i < n; i++)
        free(errors[i]);
    free(errors);
    free(probs);
    free(logits);
    vt_predictor_free(p);
    vt_pool_free(pool);
    vt_loader_reap(be, 1); /* (loaders let go of with a read stuck) */
    vt_backend_free(be);
    return status;
}

/* ---- eval -------------------------------------------------------------- */

int vt_fg_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"backend", required_argument, NULL, 'b'}, {"threads", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    vt__common common = {"auto", 0};
    vt_backend *be = NULL;
    vt_pool *pool = NULL;
    vt_predictor *p = NULL;
    vt_eval_result r = {0};
    int opt, rc, status = 1, json = 0;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":b:t:jh", opts, NULL)) != -1) {
        if ((rc = vt__common_opt(opt, &common)) != 0) {
            if (rc < 0)
                return 2;
            continue;
        }
        if (opt == 'j') {
            json = 1;
            continue;
        }
        if (opt == 'h') {
            printf("usage: vggtuned eval [--backend B] [--threads N] [--json] MODEL DIR\n"
                   "Accuracy, per-class precision and recall, and the confusion matrix of a\n"
                   "model on a folder with one sub-folder per class (--json: as the\n"
                   "daemon's eval reply, PROTOCOL.md).\n");
            return 0;
        }
        return vt__usage_error("eval", opt, argv, NULL);
    }
    if (argc - optind != 2)
        return vt__usage_error("eval", 0, argv, argc - optind < 2 ? "a model and a folder are needed"
                                                                 : "one model and one folder");
    if (vt__make_backend(&be, &common) < 0)
        goto done;
    if (vt_pool_create(&pool, common.threads) < 0 ||
        vt_predictor_load(&p, be, argv[optind], NULL) < 0 ||
        vt_predictor_eval(p, pool, argv[optind + 1], NULL, &r) < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        goto done;
    }
    cJSON *e = vt_eval_json(p, &r);
    char *text = json && e ? cJSON_PrintUnformatted(e) : NULL;
    int ok = e && (!json || text);
    if (!ok)
        fprintf(stderr, "vggtuned: out of memory\n");
    else if (json)
        printf("%s\n", text);
    else
        vt_report_eval(stdout, e); /* as vggtune eval prints the daemon's reply */
    free(text);
    cJSON_Delete(e);
    status = ok ? 0 : 1;
done:
    vt_eval_result_free(&r);
    vt_predictor_free(p);
    vt_pool_free(pool);
    vt_loader_reap(be, 1); /* (loaders let go of with a read stuck) */
    vt_backend_free(be);
    return status;
}

/* test_client.c - the vggtune client's logic: options, the job document
 * submit builds, rendering of replies and events, exit statuses, and whole
 * commands run against the scripted fake daemon (tests/fake_vggtuned.c). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../client/cli.h"
#include "../common/utf8.h"
#include "../engine/safetensors.h"
#include "../proto/report.h"
#include "fake_vggtuned.h"
#include "vt_test.h"

/* ---- helpers ----------------------------------------------------------- */

/* A stream that collects what is written to it. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} capture;

static void cap_open(capture *c)
{
    c->buf = NULL;
    c->len = 0;
    c->f = open_memstream(&c->buf, &c->len);
}

/* The text written so far (valid until cap_close). */
static const char *cap_text(capture *c)
{
    fflush(c->f);
    return c->buf ? c->buf : "";
}

static void cap_close(capture *c)
{
    fclose(c->f);
    free(c->buf);
    c->buf = NULL;
}

static const char *sval(const cJSON *o, const char *path)
{
    char key[128], *dot;
    snprintf(key, sizeof key, "%s", path);
    while ((dot = strchr(key, '.'))) {
        *dot = '\0';
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    o = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(o) ? o->valuestring : NULL;
}

static const cJSON *item(const cJSON *o, const char *path)
{
    char key[128], *dot;
    snprintf(key, sizeof key, "%s", path);
    while ((dot = strchr(key, '.'))) {
        *dot = '\0';
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        memmove(key, dot + 1, strlen(dot + 1) + 1);
    }
    return cJSON_GetObjectItemCaseSensitive(o, key);
}

static double nval(const cJSON *o, const char *path)
{
    const cJSON *v = item(o, path);
    return cJSON_IsNumber(v) ? v->valuedouble : -12345;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Runs submit's parser on a NULL-terminated argument list. */
static int submit_parse(vt_cli_submit *s, vt_cli *cli, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "vggtune";
    argv[argc++] = "submit";
    while (*args && argc < 63)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    return vt_cli_submit_parse(s, cli, argc, argv, 2);
}

static void use_utc(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
}

/* ---- options ----------------------------------------------------------- */

static void test_options(vt_backend *be)
{
    static const vt_cli_opt opts[] = {
        {"all", 'a', 0, 1}, {"top", 'k', 1, 2}, {"json", 0, 0, 3}, {NULL, 0, 0, 0}};
    char *argv[] = {"vggtune", "x", "--top=5", "-k", "7", "-k9", "--top", "3", "-a",
                    "-", "--", "--json", NULL};
    const char *val = NULL;
    vt_cli_args a;
    (void)be;

    vt_cli_args_init(&a, 12, argv, 1);
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 0);
    VT_CHECK_STR(val, "x");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 2);
    VT_CHECK_STR(val, "5");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 2);
    VT_CHECK_STR(val, "7");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 2);
    VT_CHECK_STR(val, "9");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 2);
    VT_CHECK_STR(val, "3");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 1);
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 0); /* "-" is an argument */
    VT_CHECK_STR(val, "-");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), 0); /* after "--" */
    VT_CHECK_STR(val, "--json");
    VT_CHECK_INT(vt_cli_next(&a, opts, &val), VT_CLI_END);

    char *bad1[] = {"v", "--nope"}, *bad2[] = {"v", "--top"}, *bad3[] = {"v", "--all=1"},
         *bad4[] = {"v", "-ax"}, *bad5[] = {"v", "-z"};
    vt_cli_args_init(&a, 2, bad1, 1);
    VT_CHECK_ERR(vt_cli_next(&a, opts, &val), VT_EINVAL, "unknown option '--nope'");
    vt_cli_args_init(&a, 2, bad2, 1);
    VT_CHECK_ERR(vt_cli_next(&a, opts, &val), VT_EINVAL, "--top needs a value");
    vt_cli_args_init(&a, 2, bad3, 1);
    VT_CHECK_ERR(vt_cli_next(&a, opts, &val), VT_EINVAL, "--all takes no value");
    vt_cli_args_init(&a, 2, bad4, 1);
    VT_CHECK_ERR(vt_cli_next(&a, opts, &val), VT_EINVAL, "unknown option '-ax'");
    vt_cli_args_init(&a, 2, bad5, 1);
    VT_CHECK_ERR(vt_cli_next(&a, opts, &val), VT_EINVAL, "unknown option '-z'");

    long long i;
    double d;
    VT_CHECK_OK(vt_cli_parse_int("--n", "-12", &i));
    VT_CHECK_INT(i, -12);
    VT_CHECK_ERR(vt_cli_parse_int("--n", "12x", &i), VT_EINVAL, "--n: '12x' is not an integer");
    VT_CHECK_ERR(vt_cli_parse_int("--n", "", &i), VT_EINVAL, "not an integer");
    VT_CHECK_ERR(vt_cli_parse_int("--n", "99999999999999999999", &i), VT_EINVAL, NULL);
    VT_CHECK_OK(vt_cli_parse_num("--lr", "1e-3", &d));
    VT_CHECK_NEAR(d, 1e-3, 1e-15);
    VT_CHECK_ERR(vt_cli_parse_num("--lr", "fast", &d), VT_EINVAL, "--lr: 'fast' is not a number");
    VT_CHECK_ERR(vt_cli_parse_num("--lr", "nan", &d), VT_EINVAL, NULL);
}

static void test_abspath(vt_backend *be)
{
    static const char *const cases[][3] = {
        {"/home/a", "data", "/home/a/data"},
        {"/home/a", "./data/", "/home/a/data"},
        {"/home/a/", "x//y/./z", "/home/a/x/y/z"},
        {"/home/a", "/abs/./p", "/abs/p"},
        {"/home/a", "../b", "/home/b"},
        {"/tmp/x/cwdtest", "../d3/train", "/tmp/x/d3/train"},
        {"/home/a", "b/../../c/./d/..", "/home/c"},
        {"/home/a", "../../../..", "/"},
        {"/", "..", "/"},
        {"/home/a", "/x/../y", "/y"},
        {"/home/a", "..b/.c", "/home/a/..b/.c"},
        {"/", ".", "/"},
        {"/home/a", ".", "/home/a"},
    };
    (void)be;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = vt_cli_abspath(cases[i][0], cases[i][1]);
        VT_CHECK_STR(p, cases[i][2]);
        free(p);
    }
}

/* ---- submit: the job document ------------------------------------------ */

static void test_submit_defaults(vt_backend *be)
{
    const char *cwd = vt_test_tmpdir("submit");
    vt_cli cli = {.cwd = cwd};
    vt_cli_submit s;
    char want[512];
    (void)be;

    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--data", "flowers/train", NULL}));
    snprintf(want, sizeof want, "%s/flowers/train", cwd);
    VT_CHECK_STR(sval(s.doc, "data.train"), want);
    VT_CHECK_STR(sval(s.doc, "name"), "flowers"); /* the parent of .../train */
    snprintf(want, sizeof want, "%s/runs/flowers", cwd);
    VT_CHECK_STR(sval(s.doc, "output"), want);
    /* Only what was asked for (and the user's umask, for the outputs'
     * permissions): the daemon fills the defaults. */
    {
        mode_t mask = umask(0);
        umask(mask);
        VT_CHECK_INT(nval(s.doc, "umask"), (int)(mask & 0777));
    }
    VT_CHECK_INT(cJSON_GetArraySize(s.doc), 4);
    VT_CHECK(!s.watch && !s.dry_run && !s.help);
    vt_cli_submit_free(&s);

    /* An output directory that exists already is not reused. */
    snprintf(want, sizeof want, "%s/runs", cwd);
    mkdir(want, 0755);
    snprintf(want, sizeof want, "%s/runs/flowers", cwd);
    mkdir(want, 0755);
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"-d", "flowers/train", "-w", NULL}));
    snprintf(want, sizeof want, "%s/runs/flowers-2", cwd);
    VT_CHECK_STR(sval(s.doc, "output"), want);
    VT_CHECK(s.watch);
    vt_cli_submit_free(&s);

    /* "." names the job after the folder it is (it was "job"). */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--data", ".", "--out", "/o", NULL}));
    VT_CHECK_STR(sval(s.doc, "name"), strrchr(cwd, '/') + 1);
    vt_cli_submit_free(&s);

    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--data", "./pets/", "--out", "o",
                                                         "--json", "--socket", "/s", NULL}));
    VT_CHECK_STR(sval(s.doc, "name"), "pets");
    snprintf(want, sizeof want, "%s/o", cwd);
    VT_CHECK_STR(sval(s.doc, "output"), want);
    VT_CHECK(cli.json);
    VT_CHECK_STR(cli.socket, "/s");
    vt_cli_submit_free(&s);

    /* Every flag lands in its field. */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--data", "/d", "--val", "v", "--mode", "bottleneck", "--epochs", "12",
        "--batch-size", "64", "--lr", "0.01", "--image-size", "64", "--weights", "w.h5",
        "--init", "i.safetensors", "--name", "n1", "--seed", "7", "--precision", "fp32",
        "--dropout", "0.25", "--dense", "512,64", "--flip", "--crop", "0.1", "--keep-best",
        "--patience", "3", "--schedule", "cosine", "--preprocess", "caffe", "--dry-run",
        NULL}));
    VT_CHECK_STR(sval(s.doc, "data.train"), "/d");
    snprintf(want, sizeof want, "%s/v", cwd);
    VT_CHECK_STR(sval(s.doc, "data.val"), want);
    VT_CHECK_STR(sval(s.doc, "mode"), "bottleneck");
    VT_CHECK_INT(nval(s.doc, "epochs"), 12);
    VT_CHECK_INT(nval(s.doc, "batch_size"), 64);
    VT_CHECK_NEAR(nval(s.doc, "optimizer.lr"), 0.01, 1e-12);
    VT_CHECK_INT(nval(s.doc, "data.image_size"), 64);
    snprintf(want, sizeof want, "%s/w.h5", cwd);
    VT_CHECK_STR(sval(s.doc, "weights"), want);
    snprintf(want, sizeof want, "%s/i.safetensors", cwd);
    VT_CHECK_STR(sval(s.doc, "init"), want);
    VT_CHECK_STR(sval(s.doc, "name"), "n1");
    snprintf(want, sizeof want, "%s/runs/n1", cwd);
    VT_CHECK_STR(sval(s.doc, "output"), want);
    VT_CHECK_INT(nval(s.doc, "seed"), 7);
    VT_CHECK_STR(sval(s.doc, "precision"), "fp32");
    VT_CHECK_NEAR(nval(s.doc, "head.dropout"), 0.25, 1e-12);
    VT_CHECK_INT(cJSON_GetArraySize(item(s.doc, "head.dense")), 2);
    VT_CHECK_INT(cJSON_GetArrayItem(item(s.doc, "head.dense"), 1)->valuedouble, 64);
    VT_CHECK(cJSON_IsTrue(item(s.doc, "augment.flip")));
    VT_CHECK_NEAR(nval(s.doc, "augment.crop"), 0.1, 1e-12);
    VT_CHECK(cJSON_IsTrue(item(s.doc, "keep_best")));
    VT_CHECK_INT(nval(s.doc, "early_stopping.patience"), 3);
    VT_CHECK_STR(sval(s.doc, "optimizer.schedule"), "cosine");
    VT_CHECK_STR(sval(s.doc, "data.preprocess"), "caffe");
    VT_CHECK(s.dry_run);
    vt_cli_submit_free(&s);

    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--data", "x", "--dense", "none",
                                                         "--help", NULL}));
    VT_CHECK(s.help);
    vt_cli_submit_free(&s);
}

static void test_submit_spec_override(vt_backend *be)
{
    const char *cwd = vt_test_tmpdir("spec");
    vt_cli cli = {.cwd = cwd};
    vt_cli_submit s;
    char path[512], want[512];
    const cJSON *sch;
    (void)be;

    snprintf(path, sizeof path, "%s/job.json", cwd);
    write_text(path, "{\"name\": \"base\", \"mode\": \"bottleneck\",\n"
                     " \"data\": {\"train\": \"d/train\", \"val_split\": 0.2},\n"
                     " \"optimizer\": {\"lr\": 0.01, \"schedule\": {\"type\": \"step\","
                     " \"step_epochs\": 3}},\n"
                     " \"epochs\": 5, \"init\": \"m.safetensors\", \"output\": \"out\"}\n");
    /* --spec last: flags override the file whatever the order. */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--epochs", "7", "--trainable-blocks", "3", "--schedule", "cosine",
        "--init-head", "12", "--val", "v", "--spec", "job.json", NULL}));
    VT_CHECK_INT(nval(s.doc, "epochs"), 7);
    VT_CHECK(!item(s.doc, "mode")); /* replaced by trainable_blocks */
    VT_CHECK_INT(nval(s.doc, "trainable_blocks"), 3);
    VT_CHECK_NEAR(nval(s.doc, "optimizer.lr"), 0.01, 1e-12);
    sch = item(s.doc, "optimizer.schedule");
    VT_CHECK_STR(sval(sch, "type"), "cosine");
    VT_CHECK_INT(nval(sch, "step_epochs"), 3); /* kept */
    VT_CHECK_INT(nval(s.doc, "init_job"), 12);
    VT_CHECK(!item(s.doc, "init")); /* --init-head replaces init */
    snprintf(want, sizeof want, "%s/v", cwd);
    VT_CHECK_STR(sval(s.doc, "data.val"), want);
    VT_CHECK(!item(s.doc, "data.val_split")); /* --val replaces val_split */
    snprintf(want, sizeof want, "%s/d/train", cwd);
    VT_CHECK_STR(sval(s.doc, "data.train"), want); /* the file's paths too */
    snprintf(want, sizeof want, "%s/out", cwd);
    VT_CHECK_STR(sval(s.doc, "output"), want);
    VT_CHECK_STR(sval(s.doc, "name"), "base");
    vt_cli_submit_free(&s);

    /* A schedule with its parameters replaces the file's whole schedule. */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--schedule", "cosine:1e-5", "--spec", "job.json", NULL}));
    sch = item(s.doc, "optimizer.schedule");
    VT_CHECK_STR(sval(sch, "type"), "cosine");
    VT_CHECK_NEAR(nval(sch, "min_lr"), 1e-5, 1e-12);
    VT_CHECK(!item(sch, "step_epochs"));
    vt_cli_submit_free(&s);
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--data", "x", "--schedule", "step:4:0.5", NULL}));
    sch = item(s.doc, "optimizer.schedule");
    VT_CHECK_STR(sval(sch, "type"), "step");
    VT_CHECK_INT(nval(sch, "step_epochs"), 4);
    VT_CHECK_NEAR(nval(sch, "gamma"), 0.5, 1e-12);
    vt_cli_submit_free(&s);
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--data", "x", "--schedule", "step:6", NULL}));
    sch = item(s.doc, "optimizer.schedule");
    VT_CHECK_INT(nval(sch, "step_epochs"), 6);
    VT_CHECK(!item(sch, "gamma")); /* the engine's default */
    vt_cli_submit_free(&s);

    /* A flag replaces what the file says in other words. */
    snprintf(path, sizeof path, "%s/tb.json", cwd);
    write_text(path, "{\"trainable_blocks\": 3, \"data\": {\"train\": \"x\"}}");
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--spec", path, "--mode", "finetune",
                                                         NULL}));
    VT_CHECK(!item(s.doc, "trainable_blocks"));
    vt_cli_submit_free(&s);
    snprintf(path, sizeof path, "%s/job.json", cwd);

    /* And the other way round. */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){
        "--spec", path, "--mode", "scratch", "--init", "x.safetensors", "--data", "/other",
        NULL}));
    VT_CHECK_STR(sval(s.doc, "mode"), "scratch");
    VT_CHECK_STR(sval(s.doc, "data.train"), "/other");
    VT_CHECK_NEAR(nval(s.doc, "data.val_split"), 0.2, 1e-12);
    snprintf(want, sizeof want, "%s/x.safetensors", cwd);
    VT_CHECK_STR(sval(s.doc, "init"), want);
    vt_cli_submit_free(&s);
}

static void test_submit_bad_values(vt_backend *be)
{
    static const struct {
        const char *args[8];
        const char *msg;
    } cases[] = {
        {{"--data", "x", "--epochs", "ten"}, "--epochs: 'ten' is not an integer"},
        {{"--data", "x", "--epochs", "0"}, "epochs must be an integer from 1 to 100000 (--epochs)"},
        {{"--data", "x", "--image-size", "100"},
         "data.image_size must be a multiple of 32, got 100 (--image-size)"},
        {{"--data", "x", "--mode", "fast"},
         "mode must be one of: bottleneck, finetune, scratch (--mode)"},
        {{"--data", "x", "--trainable-blocks", "6"}, "(--trainable-blocks)"},
        {{"--data", "x", "--dense", "1,x"}, "--dense: '1,x' is not a list of layer widths"},
        {{"--data", "x", "--dense", "0"}, "head.dense[0] must be an integer from 1 to 65536 (--dense)"},
        {{"--data", "x", "--lr", "-1"}, "optimizer.lr must be a number > 0 and <= 10 (--lr)"},
        {{"--data", "x", "--schedule", "linear"}, "optimizer.schedule must be one of"},
        {{"--data", "x", "--schedule", "linear:3"}, "--schedule: 'linear:3' is not a schedule"},
        {{"--data", "x", "--schedule", "cosine:1:2"}, "--schedule: 'cosine:1:2' is not a"},
        {{"--data", "x", "--schedule", "step:x"}, "--schedule step:EPOCHS: 'x' is not an integer"},
        {{"--data", "x", "--schedule", "step:0"},
         "optimizer.schedule.step_epochs must be an integer from 1 to 100000 (--schedule)"},
        {{"--data", "x", "--schedule", "step:2:1.5"}, "optimizer.schedule.gamma must be"},
        {{"--data", "x", "--schedule", "cosine:1"}, "optimizer.schedule.min_lr (1) must not exceed"},
        {{"--data", "x", "--precision", "fp16"}, "(--precision)"},
        {{"--data", "x", "--val-split", "0.95"}, "(--val-split)"},
        {{"--data", "x", "--init-head", "0"}, "init_job must be an integer from 1"},
        {{"--data", "x", "--keep-best"}, "keep_best needs validation data (data.val or "
                                         "data.val_split) (--keep-best)"},
        {{"--data", "x", "--patience", "2"}, "early_stopping.patience needs validation data "
                                             "(data.val or data.val_split) (--patience)"},
        {{"--data", "x", "--name", "a/b"}, "name must be at most 127 bytes"},
        {{"--epochs", "3"}, "--data DIR is required"},
        {{"--data", "x", "--bogus"}, "unknown option '--bogus'"},
        {{"--data", "x", "extra"}, "unexpected argument 'extra'"},
        {{"--data"}, "--data needs a value"},
        /* a value left out: the next option is not taken for it */
        {{"--data", "x", "--epochs", "--lr", "0.1"}, "--epochs needs a value (the next "
                                                      "argument is the option '--lr'; write "
                                                      "--epochs=VALUE"},
        {{"--data", "x", "-e", "--lr", "0.1"}, "-e needs a value (the next argument"},
        {{"--data", "x", "--flip=yes"}, "--flip takes no value"},
        /* Two flags that say different things: refused, in either order. */
        {{"--data", "x", "--val", "v", "--val-split", "0.2"},
         "give --val or --val-split, not both"},
        {{"--data", "x", "--val-split", "0.2", "--val", "v"},
         "give --val or --val-split, not both"},
        {{"--data", "x", "--init", "m.safetensors", "--init-head", "3"},
         "give --init or --init-head, not both"},
        {{"--data", "x", "--mode", "finetune", "--trainable-blocks", "3"},
         "--mode finetune means --trainable-blocks 1, but --trainable-blocks is 3"},
        {{"--data", "x", "--trainable-blocks", "0", "-m", "scratch"},
         "--mode scratch means --trainable-blocks 5, but --trainable-blocks is 0"},
        {{"--data", "x", "--mode", "fast", "--trainable-blocks", "1"},
         "mode must be one of: bottleneck, finetune, scratch (--mode)"},
    };
    const char *cwd = vt_test_tmpdir("bad");
    vt_cli cli = {.cwd = cwd};
    vt_cli_submit s;
    char path[512], msg[1024];
    (void)be;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        VT_CHECK_ERR(submit_parse(&s, &cli, cases[i].args), VT_EINVAL, cases[i].msg);
        VT_CHECK(!s.doc);
    }
    /* --mode and --trainable-blocks that agree say one thing twice. */
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--data", "x", "--mode", "bottleneck",
                                                         "--trainable-blocks", "0", NULL}));
    VT_CHECK_INT(nval(s.doc, "trainable_blocks"), 0);
    vt_cli_submit_free(&s);

    /* Mistakes in a spec file name the file, or the flag when one set it. */
    snprintf(path, sizeof path, "%s/bad.json", cwd);
    write_text(path, "{\"data\": {\"train\": \"x\"}, \"epochs\": 0}");
    snprintf(msg, sizeof msg, "epochs must be an integer from 1 to 100000 (in %s)", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL, msg);
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--spec", path, "-e", "2", NULL}));
    vt_cli_submit_free(&s);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, "-e", "0", NULL}),
                 VT_EINVAL, "epochs must be an integer from 1 to 100000 (--epochs)");
    write_text(path, "{\"data\": {\"train\": \"x\"}, \"epoch\": 3}");
    snprintf(msg, sizeof msg, "%s: unknown field epoch", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL, msg);
    /* data in the wrong shape: said so, not "--data DIR is required" */
    write_text(path, "{\"data\": \"d3/train\"}");
    snprintf(msg, sizeof msg, "%s: data must be an object, {\"train\": DIR, ...}", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL, msg);
    write_text(path, "{\"data\": {\"train\": [\"d3\"]}}");
    snprintf(msg, sizeof msg, "%s: data.train must be a string", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL, msg);
    /* ... and a --data flag replaces it, as flags replace spec fields */
    write_text(path, "{\"data\": \"d3/train\"}");
    VT_CHECK_OK(submit_parse(&s, &cli, (const char *[]){"--spec", path, "-d", "x", NULL}));
    vt_cli_submit_free(&s);
    write_text(path, "{\"epochs\": 2}");
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL,
                 "--data DIR is required");
    write_text(path, "{\"data\": ");
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL,
                 "is not valid JSON");
    write_text(path, "[1]");
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL,
                 "must hold a JSON object");
    /* a second document after the first is not dropped unseen */
    write_text(path, "{\"data\": {\"train\": \"x\"}, \"epochs\": 1} {\"epochs\": 3} garbage");
    snprintf(msg, sizeof msg, "--spec %s: the job document goes on after its end, at line 1 "
             "(byte 38)", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, NULL}), VT_EINVAL, msg);
    VT_CHECK(!s.doc);
    /* A field twice: which one counts is not left to the reader (a flag
     * would replace only the first). */
    write_text(path, "{\"data\": {\"train\": \"x\"}, \"epochs\": 5, \"epochs\": 2}");
    snprintf(msg, sizeof msg, "--spec %s: epochs appears twice", path);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", path, "-e", "1", NULL}),
                 VT_EINVAL, msg);
    /* A --spec file that cannot be read is a usage error like a bad one. */
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", "nope.json", NULL}),
                 VT_EINVAL, "nope.json: no such file");
    VT_CHECK(!s.doc);
    VT_CHECK_ERR(submit_parse(&s, &cli, (const char *[]){"--spec", cwd, NULL}), VT_EINVAL,
                 "not a regular file");
}

static void test_check_paths(vt_backend *be)
{
    const char *dir = vt_test_tmpdir("paths");
    char train[512], file[512], text[2048], msg[2048];
    cJSON *doc;
    (void)be;

    snprintf(train, sizeof train, "%s/train", dir);
    mkdir(train, 0755);
    /* Fewer than two class folders: seen at once, from the top level. */
    char sub[1024];
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"}}", train);
    doc = fake_json(text);
    snprintf(msg, sizeof msg, "--data %s has no class folders", train);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
    snprintf(sub, sizeof sub, "%s/cats", train);
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/.hidden", train); /* not a class, as in the scan */
    mkdir(sub, 0755);
    snprintf(sub, sizeof sub, "%s/notes.txt", train); /* nor is a file */
    write_text(sub, "x");
    snprintf(msg, sizeof msg, "--data %s has one class folder (cats)", train);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
    snprintf(sub, sizeof sub, "%s/dogs", train);
    mkdir(sub, 0755);
    VT_CHECK_OK(vt_cli_check_paths(doc));
    cJSON_Delete(doc);
    snprintf(file, sizeof file, "%s/w.h5", dir);
    write_text(file, "\x89HDF\r\n\x1a\n and then the rest");
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train, file);
    doc = fake_json(text);
    VT_CHECK_OK(vt_cli_check_paths(doc));
    cJSON_Delete(doc);

    /* --val with other class folders than --data's; an output that is a file. */
    {
        char val[512], cls[600];
        snprintf(val, sizeof val, "%s/val", dir);
        mkdir(val, 0755);
        snprintf(cls, sizeof cls, "%s/cats", val);
        mkdir(cls, 0755);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\",\"val\":\"%s\"}}", train, val);
        doc = fake_json(text);
        snprintf(msg, sizeof msg, "--val %s lacks the class folder 'dogs' of --data %s", val,
                 train);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
        snprintf(cls, sizeof cls, "%s/dogs", val);
        mkdir(cls, 0755);
        VT_CHECK_OK(vt_cli_check_paths(doc));
        snprintf(cls, sizeof cls, "%s/emus", val);
        mkdir(cls, 0755);
        snprintf(msg, sizeof msg, "--val %s has a class folder 'emus' that --data %s lacks",
                 val, train);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
        cJSON_Delete(doc);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"output\":\"%s\"}", train,
                 file);
        doc = fake_json(text);
        snprintf(msg, sizeof msg, "--out %s exists and is not a directory", file);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
        cJSON_Delete(doc);
        /* The dataset's root (train/ and val/, with the same class folders)
         * given for its training folder would train a classifier of the
         * splits.  Here val/ has a class folder that train/ lacks (emus):
         * its folders are taken for classes, until it has not. */
        char cls2[700], named[600];
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"}}", dir);
        doc = fake_json(text);
        VT_CHECK_OK(vt_cli_check_paths(doc));
        snprintf(cls2, sizeof cls2, "%s/val/emus", dir);
        VT_CHECK(rmdir(cls2) == 0);
        snprintf(msg, sizeof msg, "--data %s holds ", dir);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, "a dataset's splits, each with the same "
                                                        "class folders, not one folder per class");
        snprintf(msg, sizeof msg, "give a split's own folder (as --data %s/train --val %s/val)",
                 dir, dir);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, msg);
        cJSON_Delete(doc);
        /* Classes that happen to be named so (images in them, or one
         * sub-folder of images each) are classes. */
        snprintf(named, sizeof named, "%s/named", dir);
        mkdir(named, 0755);
        for (int k = 0; k < 2; k++) {
            snprintf(cls2, sizeof cls2, "%s/%s", named, k ? "test" : "train");
            mkdir(cls2, 0755);
            snprintf(cls2, sizeof cls2, "%s/%s/side", named, k ? "test" : "train");
            mkdir(cls2, 0755);
            snprintf(cls2, sizeof cls2, "%s/%s/a.jpg", named, k ? "test" : "train");
            write_text(cls2, "x");
        }
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"}}", named);
        doc = fake_json(text);
        VT_CHECK_OK(vt_cli_check_paths(doc));
        cJSON_Delete(doc);
    }

    /* --init must be one of our models (safetensors), not Keras weights. */
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"init\":\"%s\"}", train, file);
    doc = fake_json(text);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, "is a Keras HDF5 file, not a model of ours");
    cJSON_Delete(doc);
    /* nor VGG16 weights as safetensors (a trunk, without head.*): the job
     * refused it only when it started, as having no head */
    for (int k = 0; k < 2; k++) {
        char trunk[512];
        vt_tensorset *set = vt_tensorset_new();
        int64_t shape[1] = {4};
        VT_CHECK(set != NULL);
        VT_CHECK_OK(vt_tensorset_add(set, "features.0.weight", 1, shape, NULL, NULL));
        VT_CHECK_OK(vt_tensorset_add(set, "classifier.6.weight", 1, shape, NULL, NULL));
        if (k)
            VT_CHECK_OK(vt_tensorset_add(set, "head.0.weight", 1, shape, NULL, NULL));
        snprintf(trunk, sizeof trunk, "%s/vgg16.safetensors", dir);
        VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, trunk, set));
        vt_tensorset_free(set);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"init\":\"%s\"}", train,
                 trunk);
        doc = fake_json(text);
        snprintf(msg, sizeof msg, "--init %s is VGG16 weights (a trunk: features.* without "
                 "head.*), not a model of ours: give it as --weights; --init takes a "
                 "model.safetensors that vggtune wrote", trunk);
        if (k)
            VT_CHECK_OK(vt_cli_check_paths(doc));
        else
            VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
        cJSON_Delete(doc);
    }

    /* A weights file of neither kind (a typo'd path to the wrong file). */
    char bogus[512];
    snprintf(bogus, sizeof bogus, "%s/notes.txt", dir);
    write_text(bogus, "these are not weights");
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train, bogus);
    doc = fake_json(text);
    snprintf(msg, sizeof msg, "--weights: %s is neither Keras HDF5 nor safetensors", bogus);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
    VT_CHECK(!strstr(vt_error_msg(), "PyTorch"));
    cJSON_Delete(doc);
    /* torchvision's own download is a PyTorch file: how to convert it */
    char pth[512];
    snprintf(pth, sizeof pth, "%s/vgg16-397923af.pth", dir);
    write_text(pth, "PK\x03\x04 a zip archive torch.save wrote");
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train, pth);
    doc = fake_json(text);
    snprintf(msg, sizeof msg, "--weights: %s is neither Keras HDF5 nor safetensors but a PyTorch "
             "file (torch.save), which is not read: convert it with python3 -c 'import sys, "
             "torch, safetensors.torch as s; s.save_file(torch.load(sys.argv[1]), sys.argv[2])' "
             "%s vgg16.safetensors", pth, pth);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
    cJSON_Delete(doc);
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"init\":\"%s\"}", train, bogus);
    doc = fake_json(text);
    snprintf(msg, sizeof msg, "--init %s is not a model file of ours (model.safetensors)", bogus);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
    cJSON_Delete(doc);

    /* A safetensors --weights file without VGG16 in it (bottleneck
     * features, say) is refused now, not when the job loads it; one
     * convolution under torchvision's name passes (the daemon checks the
     * rest, shapes included). */
    for (int k = 0; k < 2; k++) {
        vt_tensorset *set = vt_tensorset_new();
        int64_t shape[1] = {4};
        VT_CHECK(set != NULL);
        VT_CHECK_OK(vt_tensorset_add(set, "features", 1, shape, NULL, NULL));
        if (k)
            VT_CHECK_OK(vt_tensorset_add(set, "features.28.weight", 1, shape, NULL, NULL));
        snprintf(bogus, sizeof bogus, "%s/bottleneck_features.safetensors", dir);
        VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, bogus, set));
        vt_tensorset_free(set);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train,
                 bogus);
        doc = fake_json(text);
        snprintf(msg, sizeof msg, "--weights %s holds no VGG16 weights (no tensor "
                 "features.0.weight ... features.28.weight)", bogus);
        if (k)
            VT_CHECK_OK(vt_cli_check_paths(doc));
        else
            VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
        cJSON_Delete(doc);
    }

    /* Nor are VGG16's weights saved from DataParallel (module.features.*)
     * or vgg16_bn's (batch norm at features.1): each is told with its cause. */
    for (int k = 0; k < 2; k++) {
        vt_tensorset *set = vt_tensorset_new();
        int64_t shape[1] = {4};
        VT_CHECK(set != NULL);
        VT_CHECK_OK(vt_tensorset_add(set, k ? "features.0.weight" : "module.features.0.weight",
                                     1, shape, NULL, NULL));
        if (k)
            VT_CHECK_OK(vt_tensorset_add(set, "features.1.running_mean", 1, shape, NULL, NULL));
        snprintf(bogus, sizeof bogus, "%s/%s.safetensors", dir, k ? "bn" : "dp");
        VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, bogus, set));
        vt_tensorset_free(set);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train,
                 bogus);
        doc = fake_json(text);
        if (k)
            snprintf(msg, sizeof msg, "--weights %s holds batch-norm statistics "
                     "(features.1.running_mean): it is vgg16_bn, a different network (VGG16 "
                     "with batch norm); give plain VGG16's weights", bogus);
        else
            snprintf(msg, sizeof msg, "--weights %s has no tensor features.0.weight but has "
                     "module.features.0.weight, as a model saved from DataParallel names it: "
                     "strip the module. prefix when saving ({k.removeprefix(\"module.\"): v "
                     "for k, v in state_dict.items()})", bogus);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EFORMAT, msg);
        cJSON_Delete(doc);
    }

    /* An --init model that does not fit the job, from its metadata: the
     * image size, the head layout, the classes (--data has 2 folders). */
    {
        static const struct {
            int classes;
            const char *size, *dense, *msg; /* msg NULL: accepted */
        } cases[] = {
            {2, NULL, NULL, "was trained at image size 32, this job's is 224 (--image-size 32"},
            {2, "32", NULL, NULL},
            {2, "32", "[64,32]", NULL},
            {2, "32", "[512]", "--dense [512] conflicts with the head of the init model"},
            {3, "32", NULL, "has 3 classes, but --data"},
        };
        char model[600], head[128];
        snprintf(model, sizeof model, "%s/init.safetensors", dir);
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            vt_tensorset *set = vt_tensorset_new();
            vt_tensorset_set_meta(set, "format", "vggtune-model-1");
            vt_tensorset_set_meta(set, "image_size", "32");
            snprintf(head, sizeof head, "{\"dense\":[64,32],\"classes\":%d}", cases[i].classes);
            vt_tensorset_set_meta(set, "head", head);
            VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, model, set));
            vt_tensorset_free(set);
            snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"%s%s},\"init\":\"%s\"%s%s%s}",
                     train, cases[i].size ? ",\"image_size\":" : "",
                     cases[i].size ? cases[i].size : "", model,
                     cases[i].dense ? ",\"head\":{\"dense\":" : "",
                     cases[i].dense ? cases[i].dense : "", cases[i].dense ? "}" : "");
            doc = fake_json(text);
            if (cases[i].msg)
                VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, cases[i].msg);
            else
                VT_CHECK_OK(vt_cli_check_paths(doc));
            cJSON_Delete(doc);
        }
    }

    /* An output holding a finished job's model: only with overwrite. */
    {
        char outdir[512], f[600];
        snprintf(outdir, sizeof outdir, "%s/done", dir);
        VT_CHECK(mkdir(outdir, 0700) == 0);
        vt_tensorset *set = vt_tensorset_new();
        vt_tensorset_set_meta(set, "format", "vggtune-model-1");
        vt_tensorset_set_meta(set, "job_id", "7");
        snprintf(f, sizeof f, "%s/model.safetensors", outdir);
        VT_CHECK_OK(vt_safetensors_write(AT_FDCWD, f, set));
        vt_tensorset_free(set);
        snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"output\":\"%s\"}", train,
                 outdir);
        doc = fake_json(text);
        VT_CHECK_OK(vt_cli_check_paths(doc)); /* unfinished: no classmap.json naming it */
        snprintf(f, sizeof f, "%s/classmap.json", outdir);
        write_text(f, "{\"classes\": [\"a\", \"b\"], \"job_id\": 7}");
        snprintf(msg, sizeof msg, "--out %s holds the model of job 7, which finished", outdir);
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EBUSY, msg);
        /* a class map of 10,000 long names (2 MiB) still counts; one that
         * cannot be parsed is not taken for "unfinished" either */
        {
            size_t cap = 10000 * 220 + 64, n = 0;
            char *big = malloc(cap);
            VT_CHECK(big != NULL);
            n += (size_t)snprintf(big, cap, "{\"job_id\": 7, \"classes\": [");
            for (int k = 0; k < 10000; k++)
                n += (size_t)snprintf(big + n, cap - n, "%s\"%0200d\"", k ? "," : "", k);
            snprintf(big + n, cap - n, "]}");
            write_text(f, big);
            free(big);
        }
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EBUSY, msg);
        write_text(f, "{\"job_id\": 7, \"classes\": [");
        VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EBUSY, msg);
        cJSON_AddTrueToObject(doc, "overwrite");
        VT_CHECK_OK(vt_cli_check_paths(doc));
        cJSON_Delete(doc);
    }

    /* Not a file to read at all: a FIFO would block the check forever. */
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/w.fifo", dir);
    VT_CHECK(mkfifo(fifo, 0600) == 0);
    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"weights\":\"%s\"}", train, fifo);
    doc = fake_json(text);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, "is not a regular file");
    cJSON_Delete(doc);

    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s/nope\"}}", dir);
    doc = fake_json(text);
    snprintf(msg, sizeof msg, "--data %s/nope: no such directory", dir);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_ENOTFOUND, msg);
    cJSON_Delete(doc);

    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\",\"val\":\"%s\"}}", train, file);
    doc = fake_json(text);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, "--val");
    VT_CHECK_CONTAINS(vt_error_msg(), "is not a directory");
    cJSON_Delete(doc);

    snprintf(text, sizeof text, "{\"data\":{\"train\":\"%s\"},\"init\":\"%s\"}", train, train);
    doc = fake_json(text);
    VT_CHECK_ERR(vt_cli_check_paths(doc), VT_EINVAL, "--init");
    cJSON_Delete(doc);
}

static void test_exit_codes(vt_backend *be)
{
    cJSON *j;
    (void)be;
    VT_CHECK_INT(vt_cli_exit_code(0, 0), 0);
    VT_CHECK_INT(vt_cli_exit_code(0, 1), 0);
    VT_CHECK_INT(vt_cli_exit_code(VT_ENOTFOUND, 1), 1); /* "no job 42" */
    VT_CHECK_INT(vt_cli_exit_code(VT_EIO, 1), 1);       /* the daemon's own I/O error */
    VT_CHECK_INT(vt_cli_exit_code(VT_ENOTFOUND, 0), 3); /* no socket */
    VT_CHECK_INT(vt_cli_exit_code(VT_EPERM, 0), 3);
    VT_CHECK_INT(vt_cli_exit_code(VT_EIO, 0), 3);       /* connection lost */
    VT_CHECK_INT(vt_cli_exit_code(VT_EPROTO, 0), 3);
    VT_CHECK_INT(vt_cli_exit_code(VT_ETOOBIG, 0), 1);   /* refused before sending */
    j = fake_json("{\"state\":\"succeeded\"}");
    VT_CHECK_INT(vt_cli_job_exit(j), 0);
    cJSON_Delete(j);
    j = fake_json("{\"state\":\"failed\"}");
    VT_CHECK_INT(vt_cli_job_exit(j), 1);
    cJSON_Delete(j);
    j = fake_json("{\"state\":\"cancelled\"}");
    VT_CHECK_INT(vt_cli_job_exit(j), 1);
    cJSON_Delete(j);
    VT_CHECK_INT(vt_cli_job_exit(NULL), 1);
}

/* ---- rendering --------------------------------------------------------- */

static const char *const jobs_json =
    "[{\"id\":42,\"name\":\"flowers\",\"user\":\"alice\",\"uid\":1000,\"state\":\"running\","
    "\"mode\":\"finetune\",\"trainable_blocks\":1,\"epochs\":10,\"epochs_done\":3,"
    "\"output\":\"/home/alice/runs/flowers\",\"submitted\":\"2026-11-27T23:00:00Z\","
    "\"started\":\"2026-11-27T23:01:00Z\",\"finished\":null,"
    "\"progress\":{\"epoch\":4,\"epochs\":10,\"step\":10,\"steps\":40,\"loss\":0.41,"
    "\"accuracy\":0.88,\"images_per_s\":1234.5,\"eta_s\":83.0,\"phase\":\"training\"},"
    "\"cancel_requested\":false},"
    "{\"id\":43,\"name\":\"cats\",\"user\":\"alice\",\"state\":\"queued\",\"epochs\":5,"
    "\"epochs_done\":0,\"submitted\":\"2026-11-27T23:05:00Z\",\"started\":null,"
    "\"finished\":null,\"queue_position\":2},"
    "{\"id\":41,\"name\":\"dogs\",\"user\":\"alice\",\"state\":\"succeeded\",\"epochs\":10,"
    "\"epochs_done\":10,\"submitted\":\"2026-11-27T22:00:00Z\","
    "\"started\":\"2026-11-27T22:00:30Z\",\"finished\":\"2026-11-27T22:12:33.250Z\","
    "\"last_epoch\":{\"epoch\":10,\"accuracy\":0.99,\"val_accuracy\":0.9125}},"
    "{\"id\":40,\"name\":\"bad\",\"user\":\"alice\",\"state\":\"failed\",\"epochs\":10,"
    "\"epochs_done\":2,\"submitted\":\"2026-11-27T21:00:00Z\",\"error\":"
    "\"CUDA error: out of memory while allocating\\n2.0 GiB for the feature cache\"},"
    "{\"id\":39,\"name\":\"old\",\"user\":\"alice\",\"state\":\"cancelled\",\"epochs\":10,"
    "\"epochs_done\":1,\"submitted\":\"2026-11-26T08:00:00Z\",\"reason\":\"cancelled by alice\"},"
    "{\"id\":44,\"user\":\"bob\",\"state\":\"queued\",\"queue_position\":1}]";

static void test_render_list(vt_backend *be)
{
    cJSON *jobs = fake_json(jobs_json);
    capture c;
    (void)be;
    use_utc();
    cap_open(&c);
    vt_cli_render_list(c.f, jobs);
    VT_CHECK_STR(cap_text(&c),
        "ID  USER   NAME     STATE      EPOCH  PROGRESS                                           SUBMITTED\n"
        "42  alice  flowers  running    4/10   32% loss 0.4100 acc 0.8800 ETA 1:23                2026-11-27 23:00\n"
        "43  alice  cats     queued     0/5    position 2                                         2026-11-27 23:05\n"
        "41  alice  dogs     succeeded  10/10  done in 12:03, val_acc 0.9125                      2026-11-27 22:00\n"
        "40  alice  bad      failed     2/10   CUDA error: out of memory while allocating 2.0...  2026-11-27 21:00\n"
        "39  alice  old      cancelled  1/10   cancelled by alice                                 2026-11-26 08:00\n"
        "44  bob    -        queued     -      position 1                                         -\n");
    cap_close(&c);
    /* Validating comes after the epoch's training: 4 of 10 epochs trained. */
    cJSON *p = cJSON_GetObjectItem(cJSON_GetArrayItem(jobs, 0), "progress");
    cJSON_ReplaceItemInObject(p, "phase", cJSON_CreateString("validating"));
    cap_open(&c);
    vt_cli_render_list(c.f, jobs);
    VT_CHECK_CONTAINS(cap_text(&c), "running    4/10   40% validating val_loss 0.4100 val_acc 0.8800 E...");
    cap_close(&c);
    /* Preparing, its steps are image headers read, no part of the epoch;
     * vggtune status says what they count. */
    cJSON *prep = fake_json("{\"epoch\":5,\"epochs\":10,\"step\":9,\"steps\":10,"
                            "\"phase\":\"preparing\"}");
    cJSON_ReplaceItemInObject(cJSON_GetArrayItem(jobs, 0), "progress", prep);
    cap_open(&c);
    vt_cli_render_list(c.f, jobs);
    VT_CHECK_CONTAINS(cap_text(&c), "running    5/10   40% preparing ");
    cap_close(&c);
    cap_open(&c);
    vt_cli_render_job(c.f, cJSON_GetArrayItem(jobs, 0));
    VT_CHECK_CONTAINS(cap_text(&c), "running: epoch 5/10 (preparing: 9/10 image headers read)\n");
    cap_close(&c);
    cJSON_ReplaceItemInObject(prep, "phase", cJSON_CreateString("training"));
    cap_open(&c);
    vt_cli_render_job(c.f, cJSON_GetArrayItem(jobs, 0));
    VT_CHECK_CONTAINS(cap_text(&c), "running: epoch 5/10, step 9/10 (training)\n");
    cap_close(&c);
    cJSON_Delete(jobs);
}

/* Columns are padded by what a terminal shows, not by bytes. */
static void test_render_width(vt_backend *be)
{
    cJSON *jobs = fake_json(
        "[{\"id\":1,\"name\":\"donn\u00e9es\",\"user\":\"alice\",\"state\":\"queued\"},"
        "{\"id\":2,\"name\":\"\u00e7ercles \u5186\",\"user\":\"al\u00efce\","
        "\"state\":\"queued\"},"
        "{\"id\":3,\"name\":\"\u043a\u0430\u0440e\u0301\",\"user\":\"bob\",\"state\":\"queued\"},"
        "{\"id\":4,\"name\":\"\u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186"
        "\u5186\u5186\u5186\",\"user\":\"bob\",\"state\":\"queued\"}]");
    capture c;
    (void)be;

    VT_CHECK_INT(vt_utf8_width(""), 0);
    VT_CHECK_INT(vt_utf8_width("abc"), 3);
    VT_CHECK_INT(vt_utf8_width("donn\xc3\xa9" "es"), 7);           /* é: 2 bytes, 1 column */
    VT_CHECK_INT(vt_utf8_width("\xc3\xa7" "ercles \xe5\x86\x86"), 10); /* 円: 2 columns */
    VT_CHECK_INT(vt_utf8_width("e\xcc\x81"), 1);                 /* e + combining acute */
    VT_CHECK_INT(vt_utf8_width("\xf0\x9f\x98\x80"), 2);         /* an emoji */
    VT_CHECK_INT(vt_utf8_width("a\xff" "b"), 3);                     /* not UTF-8: 1 each */
    cap_open(&c);
    vt_cli_render_list(c.f, jobs);
    VT_CHECK_STR(cap_text(&c),
        "ID  USER   NAME                     STATE   EPOCH  PROGRESS  SUBMITTED\n"
        "1   alice  donn\u00e9es                  queued  -      waiting   -\n"
        "2   al\u00efce  \u00e7ercles \u5186               queued  -      waiting   -\n"
        "3   bob    \u043a\u0430\u0440e\u0301                     queued  -      waiting   -\n"
        /* 13 wide characters cut at 24 columns, between two of them */
        "4   bob    \u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186\u5186...  queued  -      "
        "waiting   -\n");
    cap_close(&c);
    cJSON_Delete(jobs);
}

static const char *const status_json =
    "{\"version\":\"0.1.0\",\"backend\":\"cpu\",\"device\":\"CPU, 2 threads, OpenBLAS fp32\","
    "\"memory\":{\"total\":8589934592,\"in_use\":1288490189,\"peak\":3650722202,"
    "\"host\":2147483648},"
    "\"feature_caches\":{\"count\":2,\"device_bytes\":1048576,\"host_bytes\":2147483648},"
    "\"trunks\":[{\"weights\":\"random (He, seed 0)\",\"bytes\":58982400,\"jobs\":1,"
    "\"resident\":true},"
    "{\"weights\":\"/w/vgg16.h5\",\"bytes\":58982400,\"jobs\":2,\"resident\":false}],"
    "\"queue\":{\"queued\":1,\"running\":2},\"requests\":{\"running\":3,\"waiting\":1},"
    "\"users\":[{\"user\":\"alice\",\"uid\":1000,\"running\":1,\"queued\":0,"
    "\"device_s\":75.2,\"share\":0.5},"
    "{\"user\":\"bob\",\"uid\":1001,\"running\":1,\"queued\":1,\"share\":0.5}],"
    "\"uptime_s\":3723.4,\"ready\":true}";

static void test_render_status(vt_backend *be)
{
    cJSON *d = fake_json(status_json);
    capture c;
    (void)be;
    cap_open(&c);
    vt_cli_render_status(c.f, d);
    VT_CHECK_STR(cap_text(&c),
        "vggtuned 0.1.0, up 1:02:03\n"
        "backend    cpu: CPU, 2 threads, OpenBLAS fp32\n"
        "memory     1.2 GiB in use (peak 3.4 GiB) of 8.0 GiB; 2.0 GiB of pinned host memory\n"
        "caches     2 (2.0 GiB in memory)\n"
        "trunks     random (He, seed 0): 56.2 MiB, 1 job\n"
        "           /w/vgg16.h5: 56.2 MiB, 2 jobs (not resident)\n"
        "jobs       2 running, 1 queued\n"
        "requests   3 in progress, 1 waiting (predict, eval)\n"
        "\n"
        "USER   UID   RUNNING  QUEUED  DEVICE TIME  SHARE\n"
        "alice  1000  1        0       1:15         50%\n"
        "bob    1001  1        1       -            50%\n");
    cap_close(&c);
    cJSON_Delete(d);

    d = fake_json("{\"version\":\"0.1.0\",\"backend\":\"cuda\",\"trunks\":[],\"users\":[],"
                  "\"ready\":false}");
    cap_open(&c);
    vt_cli_render_status(c.f, d);
    VT_CHECK_STR(cap_text(&c), "vggtuned 0.1.0 (starting: the device is not ready yet)\n"
                               "backend    cuda\n"
                               "trunks     none loaded\n");
    cap_close(&c);
    cJSON_Delete(d);
}

static void test_render_job(vt_backend *be)
{
    cJSON *job = fake_json(
        "{\"id\":42,\"name\":\"flowers\",\"user\":\"alice\",\"uid\":1000,\"state\":\"failed\","
        "\"mode\":\"finetune\",\"trainable_blocks\":1,\"epochs\":10,\"epochs_done\":2,"
        "\"output\":\"/home/alice/runs/flowers\",\"submitted\":\"2026-11-27T23:00:00Z\","
        "\"started\":\"2026-11-27T23:01:00Z\",\"finished\":\"2026-11-27T23:05:00Z\","
        "\"error\":\"out of device memory\",\"cancel_requested\":false,"
        "\"trunk\":\"/srv/vgg16_notop.h5\",\"compute\":\"bf16\",\"preprocess\":\"caffe\","
        "\"spec\":{\"data\":{\"train\":\"/home/alice/flowers/train\",\"val\":null,"
        "\"val_split\":0.2,\"image_size\":224,\"preprocess\":\"auto\"},\"weights\":null,\"seed\":1,"
        "\"init_job\":7,"
        "\"trainable_blocks\":1,"
        "\"batch_size\":32,\"optimizer\":{\"lr\":0.001,\"momentum\":0.9,\"nesterov\":true,"
        "\"decay\":1e-6,\"weight_decay\":0.0001,\"schedule\":{\"type\":\"cosine\","
        "\"min_lr\":1e-05}},\"precision\":\"auto\",\"head\":{\"dense\":[256],\"dropout\":0.5},"
        "\"augment\":{\"flip\":true,\"crop\":0.1},\"early_stopping\":{\"patience\":3,"
        "\"min_delta\":0},\"keep_best\":true},"
        "\"metrics\":[{\"epoch\":1,\"loss\":0.9,\"accuracy\":0.6,\"val_loss\":0.8,"
        "\"val_accuracy\":0.65,\"images_per_s\":1200.4,\"seconds\":10.24,\"lr\":0.001,"
        "\"cached\":false},{\"epoch\":2,\"loss\":0.5,\"accuracy\":0.8,\"val_loss\":null,"
        "\"val_accuracy\":null,\"images_per_s\":5000,\"seconds\":2.5,\"lr\":0.0009,"
        "\"cached\":true}]}");
    cJSON *other = fake_json("{\"id\":44,\"user\":\"bob\",\"state\":\"queued\","
                             "\"queue_position\":1}");
    capture c;
    (void)be;
    use_utc();
    cap_open(&c);
    vt_cli_render_job(c.f, job);
    VT_CHECK_STR(cap_text(&c),
        "job        42 (flowers)\n"
        "user       alice (uid 1000)\n"
        "state      failed: out of device memory\n"
        "mode       finetune (trainable blocks 1)\n"
        "epochs     2 of 10 done\n"
        "data       /home/alice/flowers/train\n"
        "validation 20% of the training images\n"
        "weights    trunk /srv/vgg16_notop.h5\n"
        "head init  from job 7\n"
        "training   batch 32, lr 0.001, image size 224, preprocess caffe (auto: what the "
        "weights expect), precision auto (computes in bf16 on this daemon's backend)\n"
        "head       dense 256, dropout 0.5\n"
        "optimizer  SGD momentum 0.9 (Nesterov), decay 1e-06, weight decay 0.0001, cosine "
        "schedule to 1e-05\n"
        "augment    flip, crop 0.1\n"
        "stopping   after 3 epochs without a val_loss improvement; keep the best epoch's model\n"
        "output     /home/alice/runs/flowers\n"
        "submitted  2026-11-27 23:00\n"
        "started    2026-11-27 23:01\n"
        "finished   2026-11-27 23:05\n"
        "\n"
        "EPOCH  LOSS    ACC     VAL_LOSS  VAL_ACC  IMG/S  TIME    LR\n"
        "1      0.9000  0.6000  0.8000    0.6500   1200   10.2 s  0.001\n"
        "2      0.5000  0.8000  -         -        5000   2.5 s   0.0009\n");
    cap_close(&c);
    cap_open(&c);
    vt_cli_render_job(c.f, other);
    VT_CHECK_STR(cap_text(&c), "job        44\n"
                               "user       bob\n"
                               "state      queued, position 1\n");
    cap_close(&c);
    cJSON_Delete(job);
    cJSON_Delete(other);
}

/* What the job JSON says of early stopping, keep_best and other users'
 * running jobs is shown as it is. */
static void test_render_job_ends(vt_backend *be)
{
    /* stopped early after 3 of 30 epochs with patience 2 (the summary of
     * list has no spec); another user's job as a non-admin sees it */
    cJSON *jobs = fake_json(
        "[{\"id\":41,\"name\":\"dogs\",\"user\":\"alice\",\"state\":\"succeeded\","
        "\"mode\":\"finetune\",\"epochs\":30,\"epochs_done\":3,"
        "\"submitted\":\"2026-11-27T22:00:00Z\",\"started\":\"2026-11-27T22:00:00Z\","
        "\"finished\":\"2026-11-27T22:01:00Z\",\"last_epoch\":{\"epoch\":3,"
        "\"val_accuracy\":0.5}},"
        "{\"id\":44,\"user\":\"bob\",\"state\":\"running\"},"
        "{\"id\":45,\"name\":\"mine\",\"user\":\"alice\",\"state\":\"running\","
        "\"mode\":\"finetune\",\"epochs\":5,\"epochs_done\":0}]");
    cJSON *job = fake_json(
        "{\"id\":41,\"name\":\"dogs\",\"user\":\"alice\",\"state\":\"succeeded\","
        "\"mode\":\"finetune\",\"trainable_blocks\":1,\"epochs\":30,\"epochs_done\":3,"
        "\"kept_epoch\":{\"epoch\":1,\"val_loss\":0.5},"
        "\"spec\":{\"keep_best\":true,\"early_stopping\":{\"patience\":2,\"min_delta\":0}}}");
    capture c;
    (void)be;
    use_utc();
    cap_open(&c);
    vt_cli_render_list(c.f, jobs);
    VT_CHECK_STR(cap_text(&c),
        "ID  USER   NAME  STATE      EPOCH                 PROGRESS                      "
        "SUBMITTED\n"
        "41  alice  dogs  succeeded  3/30 (stopped early)  done in 1:00, val_acc 0.5000  "
        "2026-11-27 22:00\n"
        "44  bob    -     running    -                     -                             -\n"
        "45  alice  mine  running    0/5                   starting                      -\n");
    cap_close(&c);

    cap_open(&c);
    vt_cli_render_job(c.f, job);
    VT_CHECK_CONTAINS(cap_text(&c),
        "epochs     3 of 30 done: stopped early, val_loss did not improve for 2 epochs "
        "(early_stopping.patience)\n"
        "model      epoch 1's (keep_best: lowest val_loss)\n");
    cap_close(&c);

    /* while it runs, the kept model is the best so far; all epochs done is
     * not early */
    cJSON_ReplaceItemInObject(job, "state", cJSON_CreateString("running"));
    cap_open(&c);
    vt_cli_render_job(c.f, job);
    VT_CHECK_CONTAINS(cap_text(&c), "epochs     3 of 30 done\n");
    VT_CHECK_CONTAINS(cap_text(&c), "model      epoch 1's (keep_best: lowest val_loss so far)\n");
    cap_close(&c);
    cJSON_ReplaceItemInObject(job, "state", cJSON_CreateString("succeeded"));
    cJSON_ReplaceItemInObject(job, "epochs_done", cJSON_CreateNumber(30));
    cap_open(&c);
    vt_cli_render_job(c.f, job);
    VT_CHECK_CONTAINS(cap_text(&c), "epochs     30 of 30 done\n");
    cap_close(&c);
    cJSON_Delete(jobs);
    cJSON_Delete(job);
}

static void test_render_lines(vt_backend *be)
{
    cJSON *p = fake_json("{\"epoch\":4,\"epochs\":10,\"step\":10,\"steps\":63,\"loss\":0.41,"
                         "\"accuracy\":0.88,\"images_per_s\":1234.5,\"eta_s\":83.0,"
                         "\"phase\":\"training\"}");
    cJSON *v = fake_json("{\"epoch\":4,\"epochs\":10,\"step\":3,\"steps\":4,"
                         "\"phase\":\"validating\",\"eta_s\":4000}");
    cJSON *m = fake_json("{\"epoch\":3,\"loss\":0.41,\"accuracy\":0.88,\"val_loss\":0.3,"
                         "\"val_accuracy\":0.9,\"images_per_s\":1234.5,\"seconds\":12.34,"
                         "\"lr\":0.001,\"cached\":true}");
    cJSON *m2 = fake_json("{\"epoch\":1,\"loss\":1.5,\"accuracy\":0.25,\"val_loss\":null,"
                          "\"val_accuracy\":null,\"images_per_s\":99.4,\"seconds\":60,"
                          "\"cached\":false}");
    char buf[512];
    (void)be;

    vt_report_progress(buf, sizeof buf, p, 120);
    VT_CHECK_STR(buf, "epoch 4/10 [###.................] 10/63  loss 0.4100  acc 0.8800  "
                      "1234 img/s  ETA 1:23");
    /* Never wider than the terminal: img/s goes first, then the end. */
    vt_report_progress(buf, sizeof buf, p, 80);
    VT_CHECK_STR(buf, "epoch 4/10 [###.................] 10/63  loss 0.4100  acc 0.8800  "
                      "ETA 1:23");
    vt_report_progress(buf, sizeof buf, p, 30);
    VT_CHECK_STR(buf, "epoch 4/10 [###..............");
    vt_report_progress(buf, sizeof buf, v, 0);
    VT_CHECK_STR(buf, "epoch 4/10 validating [###############.....] 3/4  ETA 1:06:40");
    /* The validation pass's means are named as such; "preparing" has none. */
    cJSON_AddNumberToObject(v, "loss", 0.25);
    cJSON_AddNumberToObject(v, "accuracy", 0.5);
    vt_report_progress(buf, sizeof buf, v, 120);
    VT_CHECK_STR(buf, "epoch 4/10 validating [###############.....] 3/4  val_loss 0.2500  "
                      "val_acc 0.5000  ETA 1:06:40");
    cJSON *prep = fake_json("{\"epoch\":1,\"epochs\":10,\"step\":0,\"steps\":0,"
                            "\"phase\":\"preparing\"}");
    vt_report_progress(buf, sizeof buf, prep, 0);
    VT_CHECK_STR(buf, "epoch 1/10 preparing");
    /* While the job's image headers are read, its steps count them. */
    cJSON_ReplaceItemInObject(prep, "step", cJSON_CreateNumber(2500));
    cJSON_ReplaceItemInObject(prep, "steps", cJSON_CreateNumber(10000));
    vt_report_progress(buf, sizeof buf, prep, 0);
    VT_CHECK_STR(buf, "epoch 1/10 preparing [#####...............] 2500/10000 image headers read");
    cJSON_Delete(prep);
    vt_report_epoch(buf, sizeof buf, m, 10);
    VT_CHECK_STR(buf, "epoch 3/10  loss 0.4100  acc 0.8800  val_loss 0.3000  val_acc 0.9000  "
                      "1234 img/s  12.3 s  (cached features)");
    /* A scratch job's cache holds images, not features. */
    cJSON_AddStringToObject(m, "cache", "images");
    vt_report_epoch(buf, sizeof buf, m, 10);
    VT_CHECK_CONTAINS(buf, "12.3 s  (cached images)");
    vt_report_epoch(buf, sizeof buf, m2, 0);
    VT_CHECK_STR(buf, "epoch 1  loss 1.5000  acc 0.2500  99 img/s  60.0 s");

    /* Integers not below 2^53 (no daemon sends them) count as missing:
     * converting them to long long was undefined behaviour. */
    cJSON *huge = fake_json("{\"epoch\":1e97,\"epochs\":10,\"step\":-1e300,\"steps\":4}");
    vt_report_progress(buf, sizeof buf, huge, 0);
    VT_CHECK_STR(buf, "[....................] 0/4");
    cJSON_Delete(huge);
    /* vggtuned run's line while the data is read: no epoch yet */
    cJSON *fgprep = fake_json("{\"epoch\":0,\"epochs\":3,\"step\":5,\"steps\":10,"
                              "\"phase\":\"preparing\"}");
    vt_report_progress(buf, sizeof buf, fgprep, 0);
    VT_CHECK_STR(buf, "preparing [##########..........] 5/10 image headers read");
    cJSON_Delete(fgprep);

    vt_report_duration(59.9, buf, sizeof buf);
    VT_CHECK_STR(buf, "0:59");
    vt_report_duration(-1, buf, sizeof buf);
    VT_CHECK_STR(buf, "--:--");
    vt_cli_fmt_bytes(512, buf, sizeof buf);
    VT_CHECK_STR(buf, "512 B");
    vt_cli_fmt_bytes(1536, buf, sizeof buf);
    VT_CHECK_STR(buf, "1.5 KiB");
    cJSON *t = cJSON_CreateString("yesterday");
    vt_cli_fmt_time(t, buf, sizeof buf);
    VT_CHECK_STR(buf, "yesterday");
    cJSON_Delete(t);
    vt_cli_fmt_time(NULL, buf, sizeof buf);
    VT_CHECK_STR(buf, "-");
    cJSON_Delete(p);
    cJSON_Delete(v);
    cJSON_Delete(m);
    cJSON_Delete(m2);
}

static void test_render_predict_eval(vt_backend *be)
{
    cJSON *pred = fake_json(
        "[{\"image\":\"/abs/a.jpg\",\"top\":[{\"class\":\"daisy\",\"index\":0,"
        "\"probability\":0.93},{\"class\":\"tulip\",\"index\":2,\"probability\":0.05}]},"
        "{\"image\":\"/abs/b.png\",\"error\":\"not a JPEG or PNG file\"}]");
    cJSON *ev = fake_json(
        "{\"n\":200,\"skipped\":1,\"accuracy\":0.9,\"loss\":0.3,\"classes\":[\"a\",\"b\xc3\xa9\"],"
        "\"precision\":[0.9,null],\"recall\":[0.8,0.95],\"confusion\":[[90,10],[5,95]]}");
    char *shown[] = {"a.jpg", "imgs/b.png"};
    capture c;
    (void)be;

    cap_open(&c);
    vt_cli_render_predictions(c.f, pred, shown, 2);
    VT_CHECK_STR(cap_text(&c), "a.jpg:  daisy 0.9300  tulip 0.0500\n"
                               "imgs/b.png:  error: not a JPEG or PNG file\n");
    cap_close(&c);
    cap_open(&c);
    vt_cli_render_predictions(c.f, pred, NULL, 0);
    VT_CHECK_CONTAINS(cap_text(&c), "/abs/a.jpg:  daisy 0.9300");
    cap_close(&c);
    cap_open(&c);
    vt_report_eval(c.f, ev);
    VT_CHECK_STR(cap_text(&c),
                 "images 200  accuracy 0.9000  loss 0.3000  (1 unreadable image skipped)\n"
                 "class                precision    recall\n"
                 "a                       0.9000    0.8000\n"
                 "b\xc3\xa9                           -    0.9500\n"
                 "confusion matrix (rows: true class, columns: predicted class, numbered "
                 "as the rows)\n"
                 "     0     1\n"
                 "    90    10   0 a\n"
                 "     5    95   1 b\xc3\xa9\n");
    cap_close(&c);
    cJSON_Delete(ev);
    /* A class name wider than the column widens it. */
    ev = fake_json("{\"n\":2,\"classes\":[\"a\",\"a-class-name-of-26-columns\"],"
                   "\"precision\":[1,1],\"recall\":[1,1]}");
    cap_open(&c);
    vt_report_eval(c.f, ev);
    VT_CHECK_CONTAINS(cap_text(&c), "class                      precision    recall\n"
                                    "a                             1.0000    1.0000\n"
                                    "a-class-name-of-26-columns    1.0000    1.0000\n");
    cap_close(&c);
    cJSON_Delete(ev);
    /* 25 classes: no matrix 150 columns wide, the most frequent confusions
     * instead (7 of class 3 taken for 0, then 2 of 1 for 24, then 2 of 5
     * for 6: ties in the matrix's order). */
    ev = cJSON_CreateObject();
    cJSON *names = cJSON_AddArrayToObject(ev, "classes"), *conf = cJSON_AddArrayToObject(ev, "confusion");
    for (int k = 0; k < 25; k++) {
        char name[16];
        cJSON *row = cJSON_CreateArray();
        snprintf(name, sizeof name, "c%d", k);
        cJSON_AddItemToArray(names, cJSON_CreateString(name));
        for (int p = 0; p < 25; p++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber(p == k                ? 10
                                                          : k == 3 && p == 0   ? 7
                                                          : k == 1 && p == 24  ? 2
                                                          : k == 5 && p == 6   ? 2 : 0));
        cJSON_AddItemToArray(conf, row);
    }
    cap_open(&c);
    vt_report_eval(c.f, ev);
    VT_CHECK_CONTAINS(cap_text(&c), "c24                          -         -\n"
                                    "confusion matrix: 25 classes, too many to print (--json "
                                    "has it); the most frequent confusions (images, true class "
                                    "-> predicted):\n"
                                    "     7  c3 -> c0\n"
                                    "     2  c1 -> c24\n"
                                    "     2  c5 -> c6\n");
    const char *text = cap_text(&c); /* (and nothing after those three) */
    VT_CHECK(strlen(text) > 9 && strcmp(text + strlen(text) - 9, "c5 -> c6\n") == 0);
    cap_close(&c);
    cJSON_Delete(ev);
    /* Counts not below 2^53 count as missing (see test_render_lines). */
    ev = fake_json("{\"n\":1e300,\"skipped\":-1e300,\"accuracy\":0.5}");
    cap_open(&c);
    vt_report_eval(c.f, ev);
    VT_CHECK_CONTAINS(cap_text(&c), "images 0  accuracy 0.5000\n");
    cap_close(&c);
    cJSON_Delete(pred);
    cJSON_Delete(ev);
}

/* A watch stream: state, progress, an epoch, a log line, progress, end. */
static const char *const watch_stream[] = {
    "{\"id\":2,\"event\":\"state\",\"job\":{\"id\":42,\"name\":\"flowers\",\"state\":\"queued\","
    "\"epochs\":2,\"epochs_done\":0,\"queue_position\":2}}",
    "{\"id\":2,\"event\":\"state\",\"job\":{\"id\":42,\"name\":\"flowers\",\"state\":\"running\","
    "\"epochs\":2,\"epochs_done\":0}}",
    "{\"id\":2,\"event\":\"progress\",\"progress\":{\"epoch\":1,\"epochs\":2,\"step\":1,"
    "\"steps\":2,\"loss\":0.9,\"accuracy\":0.5,\"images_per_s\":100,\"eta_s\":3,"
    "\"phase\":\"training\"}}",
    "{\"id\":2,\"event\":\"epoch\",\"metrics\":{\"epoch\":1,\"loss\":0.8,\"accuracy\":0.6,"
    "\"val_loss\":null,\"val_accuracy\":null,\"images_per_s\":100,\"seconds\":1.5,"
    "\"cached\":false}}",
    "{\"id\":2,\"event\":\"log\",\"level\":\"warn\",\"message\":\"2 images unreadable, skipped\"}",
    "{\"id\":2,\"event\":\"progress\",\"progress\":{\"epoch\":2,\"epochs\":2,\"step\":2,"
    "\"steps\":2,\"phase\":\"saving\"}}",
    NULL,
};

static void test_watcher(vt_backend *be)
{
    cJSON *end_ok = fake_json("{\"id\":2,\"ok\":true,\"event\":\"end\",\"job\":{\"id\":42,"
                              "\"name\":\"flowers\",\"state\":\"succeeded\",\"epochs_done\":2,"
                              "\"started\":\"2026-11-27T23:00:00Z\",\"finished\":"
                              "\"2026-11-27T23:00:05Z\",\"output\":\"/o\"}}");
    cJSON *end_bad = fake_json("{\"id\":2,\"ok\":true,\"event\":\"end\",\"job\":{\"id\":42,"
                               "\"name\":\"flowers\",\"state\":\"failed\",\"error\":\"boom\"}}");
    cJSON *end_cx = fake_json("{\"id\":2,\"ok\":true,\"event\":\"end\",\"job\":{\"id\":42,"
                              "\"state\":\"cancelled\",\"reason\":\"cancelled by bob (admin)\"}}");
    cJSON *err = fake_json("{\"id\":2,\"ok\":false,\"error\":{\"code\":\"EPERM\","
                           "\"message\":\"job 42 belongs to bob\"}}");
    vt_cli_watcher w;
    capture out, errs;
    (void)be;

    /* Not a terminal: plain lines, no carriage returns, no progress. */
    cap_open(&out);
    cap_open(&errs);
    vt_cli_watcher_init(&w, out.f, errs.f, 0, 80, 42);
    for (int i = 0; watch_stream[i]; i++) {
        cJSON *m = fake_json(watch_stream[i]);
        VT_CHECK_INT(vt_cli_watcher_feed(&w, m), 0);
        cJSON_Delete(m);
    }
    VT_CHECK_INT(vt_cli_watcher_feed(&w, end_ok), 1);
    VT_CHECK_INT(vt_cli_watcher_finish(&w), 0);
    VT_CHECK_STR(cap_text(&out),
                 "job 42 (flowers): queued, position 2\n"
                 "job 42 (flowers): running\n"
                 "epoch 1/2  loss 0.8000  acc 0.6000  100 img/s  1.5 s\n"
                 "warn: 2 images unreadable, skipped\n"
                 "job 42 (flowers) succeeded: 2 epochs in 0:05, output in /o\n");
    VT_CHECK_STR(cap_text(&errs), "");
    vt_cli_watcher_free(&w);
    cap_close(&out);
    cap_close(&errs);

    /* A terminal: the progress line is rewritten in place and cleared
     * before each permanent line. */
    cap_open(&out);
    cap_open(&errs);
    vt_cli_watcher_init(&w, out.f, errs.f, 1, 80, 42);
    for (int i = 0; watch_stream[i]; i++) {
        cJSON *m = fake_json(watch_stream[i]);
        VT_CHECK_INT(vt_cli_watcher_feed(&w, m), 0);
        cJSON_Delete(m);
    }
    VT_CHECK_INT(vt_cli_watcher_feed(&w, end_bad), 1);
    VT_CHECK_INT(vt_cli_watcher_finish(&w), 1);
    VT_CHECK_STR(cap_text(&out),
                 "job 42 (flowers): queued, position 2\n"
                 "job 42 (flowers): running\n"
                 "\r\033[Kepoch 1/2 [##########..........] 1/2  loss 0.9000  acc 0.5000  "
                 "ETA 0:03"
                 "\r\033[Kepoch 1/2  loss 0.8000  acc 0.6000  100 img/s  1.5 s\n"
                 "warn: 2 images unreadable, skipped\n"
                 "\r\033[Kepoch 2/2 saving [####################] 2/2"
                 "\r\033[K");
    VT_CHECK_STR(cap_text(&errs), "vggtune: job 42 (flowers) failed: boom\n");
    vt_cli_watcher_free(&w);
    cap_close(&out);
    cap_close(&errs);

    /* Cancelled; an error reply; --json (quiet) keeps only the verdict. */
    cap_open(&out);
    cap_open(&errs);
    vt_cli_watcher_init(&w, out.f, errs.f, 0, 0, 42);
    VT_CHECK_INT(vt_cli_watcher_feed(&w, end_cx), 1);
    VT_CHECK_INT(vt_cli_watcher_finish(&w), 1);
    VT_CHECK_STR(cap_text(&errs), "vggtune: job 42 was cancelled: cancelled by bob (admin)\n");
    VT_CHECK_ERR(vt_cli_watcher_feed(&w, err), VT_EPERM, "job 42 belongs to bob");
    vt_cli_watcher_free(&w);
    vt_cli_watcher_init(&w, out.f, errs.f, 1, 0, 42);
    w.quiet = 1;
    for (int i = 0; watch_stream[i]; i++) {
        cJSON *m = fake_json(watch_stream[i]);
        VT_CHECK_INT(vt_cli_watcher_feed(&w, m), 0);
        cJSON_Delete(m);
    }
    VT_CHECK_INT(vt_cli_watcher_feed(&w, end_ok), 1);
    VT_CHECK_INT(vt_cli_watcher_finish(&w), 0);
    VT_CHECK_STR(cap_text(&out), "");
    vt_cli_watcher_free(&w);
    cap_close(&out);
    cap_close(&errs);
    cJSON_Delete(end_ok);
    cJSON_Delete(end_bad);
    cJSON_Delete(end_cx);
    cJSON_Delete(err);
}

/* ---- whole commands against the fake daemon ---------------------------- */

static const char *op_of(const cJSON *req)
{
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    return cJSON_IsString(op) ? op->valuestring : "";
}

/* A small daemon: list, job, cancel (42 only), submit, watch (42: a short
 * successful run; 43: fails; 44: the connection drops), predict, eval,
 * status. */
static void script_daemon(fake_daemon *d, int fd)
{
    const cJSON *req;
    if (fake_hello(d, fd) < 0)
        return;
    while ((req = fake_recv(d, fd))) {
        const char *op = op_of(req);
        double job = cJSON_GetObjectItem(req, "job") && cJSON_IsNumber(cJSON_GetObjectItem(req, "job"))
                         ? cJSON_GetObjectItem(req, "job")->valuedouble : 0;
        const char *name = cJSON_GetStringValue(
            cJSON_GetObjectItem(cJSON_GetObjectItem(req, "job"), "name"));
        if (strcmp(op, "list") == 0) {
            cJSON *body = cJSON_CreateObject();
            cJSON_AddItemToObject(body, "jobs", fake_json(jobs_json));
            fake_ok(fd, req, body);
        } else if (strcmp(op, "status") == 0) {
            cJSON *body = cJSON_CreateObject();
            cJSON_AddItemToObject(body, "daemon", fake_json(status_json));
            fake_ok(fd, req, body);
        } else if (strcmp(op, "cancel") == 0 && job == 42) {
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":42,\"name\":\"flowers\","
                                       "\"state\":\"running\",\"cancel_requested\":true}}"));
        } else if (strcmp(op, "cancel") == 0 && job == 48) { /* its final model written */
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":48,\"name\":\"done\","
                                       "\"state\":\"succeeded\",\"output\":\"/r/done\","
                                       "\"cancel_requested\":true}}"));
        } else if (strcmp(op, "cancel") == 0 && job == 49) { /* its final model failed */
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":49,\"name\":\"full\","
                                       "\"state\":\"failed\",\"error\":\"disk full\","
                                       "\"cancel_requested\":true}}"));
        } else if (strcmp(op, "cancel") == 0 && job == 50) { /* escapes in its name */
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":50,\"name\":\"\\u001b]0;t\\u0007x"
                                       "\\u009b2J\",\"state\":\"running\",\"cancel_requested\":"
                                       "true}}"));
        } else if (strcmp(op, "cancel") == 0 && job == 53) {
            fake_error(fd, req, VT_ENOTFOUND, "no job \x1b[2J53\ttab");
        } else if (strcmp(op, "cancel") == 0 && (job == 51 || job == 52)) { /* writing, preparing */
            char reply[256];
            snprintf(reply, sizeof reply, "{\"job\":{\"id\":%d,\"name\":\"slow\",\"state\":"
                     "\"running\",\"cancel_requested\":true,\"progress\":{\"phase\":\"%s\"}}}",
                     (int)job, job == 51 ? "saving" : "preparing");
            fake_ok(fd, req, fake_json(reply));
        } else if (strcmp(op, "cancel") == 0 && job == 46) { /* behind a long step */
            usleep(4000 * 1000); /* (a second past the notice's 3) */
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":46,\"name\":\"big\","
                                       "\"state\":\"running\",\"cancel_requested\":true}}"));
        } else if (strcmp(op, "submit") == 0 && name && strcmp(name, "huge-id") == 0) {
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":1e300,\"name\":\"huge-id\","
                                       "\"state\":\"queued\"}}"));
        } else if (strcmp(op, "submit") == 0) {
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":45,\"name\":\"flowers\","
                                       "\"state\":\"queued\",\"queue_position\":1}}"));
        } else if (strcmp(op, "watch") == 0 && (job == 42 || job == 45)) {
            /* Another request's messages are not this watch's. */
            fake_send_raw(fd, "{\"id\":999,\"ok\":true,\"event\":\"end\",\"job\":{\"id\":42,"
                              "\"state\":\"failed\"}}\n");
            for (int i = 0; watch_stream[i]; i++) { /* with this request's id */
                cJSON *ev = fake_json(watch_stream[i]);
                cJSON_ReplaceItemInObject(ev, "id",
                                          cJSON_Duplicate(cJSON_GetObjectItem(req, "id"), 1));
                char *text = cJSON_PrintUnformatted(ev);
                fake_send_raw(fd, text);
                fake_send_raw(fd, "\n");
                free(text);
                cJSON_Delete(ev);
            }
            fake_ok(fd, req, fake_json("{\"event\":\"end\",\"job\":{\"id\":42,"
                                       "\"name\":\"flowers\",\"state\":\"succeeded\","
                                       "\"epochs_done\":2}}"));
        } else if (strcmp(op, "watch") == 0 && job == 43) {
            fake_event(fd, req, "state", fake_json("{\"job\":{\"id\":43,\"name\":\"x\","
                                                   "\"state\":\"running\"}}"));
            fake_ok(fd, req, fake_json("{\"event\":\"end\",\"job\":{\"id\":43,\"name\":\"x\","
                                       "\"state\":\"failed\",\"error\":\"no images in "
                                       "/d/train\"}}"));
        } else if (strcmp(op, "watch") == 0 && job == 44) {
            fake_event(fd, req, "state", fake_json("{\"job\":{\"id\":44,\"name\":\"y\","
                                                   "\"state\":\"running\"}}"));
            return; /* the daemon dies */
        } else if (strcmp(op, "predict") == 0 && job == 46) { /* many images, no job */
            usleep(4000 * 1000); /* (a second past the notice's 3) */
            fake_ok(fd, req, fake_json("{\"predictions\":[{\"image\":\"/x/a.jpg\",\"top\":"
                                       "[{\"class\":\"daisy\",\"index\":0,"
                                       "\"probability\":0.93}]}]}"));
        } else if (strcmp(op, "predict") == 0) {
            fake_ok(fd, req, fake_json("{\"predictions\":[{\"image\":\"/x/a.jpg\",\"top\":"
                                       "[{\"class\":\"daisy\",\"index\":0,"
                                       "\"probability\":0.93}]}]}"));
        } else if (strcmp(op, "eval") == 0) {
            if (job == 47) /* a large folder: progress before the reply */
                for (int k = 1; k <= 2; k++) {
                    char text[128];
                    snprintf(text, sizeof text, "{\"progress\":{\"phase\":\"evaluating\","
                             "\"step\":%d,\"steps\":2}}", k);
                    fake_event(fd, req, "progress", fake_json(text));
                }
            fake_ok(fd, req, fake_json("{\"eval\":{\"n\":2,\"skipped\":0,\"accuracy\":1,"
                                       "\"loss\":0.1,\"classes\":[\"a\"],\"precision\":[1],"
                                       "\"recall\":[1],\"confusion\":[[2]]}}"));
        } else {
            char msg[64];
            snprintf(msg, sizeof msg, "no job %.0f", job);
            fake_error(fd, req, VT_ENOTFOUND, msg);
        }
    }
}

typedef struct {
    int status;
    char out[8192], err[4096];
} run_result;

/* Runs "vggtune ARGS..." against d (NULL: a socket that does not exist). */
static void run_cli(run_result *r, fake_daemon *d, const char *cwd, int tty,
                    const char *const *args)
{
    char *argv[64], sock[256];
    int argc = 0;
    capture out, err;
    vt_cli cli = {0};

    argv[argc++] = "vggtune";
    if (d) {
        snprintf(sock, sizeof sock, "--socket=%s", d->path);
        argv[argc++] = sock;
    } else {
        snprintf(sock, sizeof sock, "--socket=%s/none.sock", cwd);
        argv[argc++] = sock;
    }
    while (*args && argc < 63)
        argv[argc++] = (char *)*args++;
    argv[argc] = NULL;
    cap_open(&out);
    cap_open(&err);
    cli.out = out.f;
    cli.err = err.f;
    cli.tty = tty;
    cli.width = 100;
    cli.cwd = cwd;
    r->status = vt_cli_main(&cli, argc, argv);
    snprintf(r->out, sizeof r->out, "%s", cap_text(&out));
    snprintf(r->err, sizeof r->err, "%s", cap_text(&err));
    cap_close(&out);
    cap_close(&err);
}

#define RUN(r, d, cwd, tty, ...) run_cli(r, d, cwd, tty, (const char *[]){__VA_ARGS__, NULL})

static void test_commands(vt_backend *be)
{
    char cwd[512];
    fake_daemon *d = NULL;
    run_result r;
    char path[1024], want[2048];
    (void)be;

    snprintf(cwd, sizeof cwd, "%s", vt_test_tmpdir("cmd"));
    use_utc();
    snprintf(path, sizeof path, "%s/flowers/train", cwd);
    snprintf(want, sizeof want, "%s/flowers", cwd);
    mkdir(want, 0755);
    mkdir(path, 0755);
    snprintf(want, sizeof want, "%s/flowers/train/daisy", cwd);
    mkdir(want, 0755);
    snprintf(want, sizeof want, "%s/flowers/train/rose", cwd);
    mkdir(want, 0755);
    VT_CHECK(fake_start(&d, cwd, script_daemon, NULL, 100) == 0);

    RUN(&r, d, cwd, 0, "list");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "ID  USER   NAME", 15) == 0);
    VT_CHECK_CONTAINS(r.out, "42  alice  flowers  running    4/10");
    VT_CHECK_STR(r.err, "");

    RUN(&r, d, cwd, 0, "list", "--json", "--all");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "{\"id\":2,\"ok\":true,\"jobs\":[{\"id\":42,", 35) == 0);
    VT_CHECK(strchr(r.out, '\n') == r.out + strlen(r.out) - 1); /* one line */

    RUN(&r, d, cwd, 0, "status");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "vggtuned 0.1.0, up 1:02:03\n", 27) == 0);

    RUN(&r, d, cwd, 0, "cancel", "42");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "cancelling job 42 (flowers): it stops after its current step\n");
    VT_CHECK_STR(r.err, "");
    /* A reply that takes more than 3 s: the client says what it waits for. */
    RUN(&r, d, cwd, 0, "cancel", "46");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.err, "vggtune: waiting for vggtuned: a running job stops when its device "
                        "ends the step (or other work) in progress, and the cancellation is "
                        "answered then\n");
    VT_CHECK_STR(r.out, "cancelling job 46 (big): it stops after its current step\n");

    /* What the job still does before it stops, by its phase: its files
     * (which may take a while), its preparation, else its step. */
    RUN(&r, d, cwd, 0, "cancel", "51");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "cancelling job 51 (slow): it is writing its files and stops once "
                        "they are written, which may take a while on a slow file system (a "
                        "final model written by then is kept, and the job succeeds)\n");
    RUN(&r, d, cwd, 0, "cancel", "52");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "cancelling job 52 (slow): it stops once the preparation under way "
                        "(its output folder, data or parameters) returns\n");

    /* A job that ended otherwise while the cancel waited for its files */
    RUN(&r, d, cwd, 0, "cancel", "48");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.out, "");
    VT_CHECK_STR(r.err, "vggtune: job 48 (done) was not cancelled: it finished first and "
                        "succeeded, output in /r/done\n");
    RUN(&r, d, cwd, 0, "cancel", "49");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.err, "vggtune: job 49 (full) was not cancelled: it failed first: disk full\n");

    /* Names and messages, which other users chose, reach a terminal without
     * their control characters; --json keeps them, escaped. */
    RUN(&r, d, cwd, 0, "cancel", "50");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "cancelling job 50 (?]0;t?x?2J): it stops after its current step\n");
    RUN(&r, d, cwd, 0, "cancel", "53");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.err, "vggtune: no job ?[2J53\ttab\n");
    RUN(&r, d, cwd, 0, "--json", "cancel", "50");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_CONTAINS(r.out, "\"name\":\"\\u001b]0;t\\u0007x\xc2\x9b" "2J\"");

    RUN(&r, d, cwd, 0, "cancel", "7");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.err, "vggtune: no job 7\n");
    RUN(&r, d, cwd, 0, "--json", "status", "7");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_CONTAINS(r.out, "\"ok\":false,\"error\":{\"code\":\"ENOTFOUND\"");

    /* submit: the document reaches the daemon with absolute paths. */
    RUN(&r, d, cwd, 0, "submit", "--data", "flowers/train", "--epochs", "3");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "submitted job 45 (flowers)\n");
    /* A job number not below 2^53 is none (converting it was undefined
     * behaviour: "submitted job -9223372036854775808"). */
    RUN(&r, d, cwd, 0, "submit", "--data", "flowers/train", "--name", "huge-id");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_CONTAINS(r.err, "vggtuned accepted the job but did not say its number");
    RUN(&r, d, cwd, 0, "submit", "--data", "flowers/train", "--watch");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "submitted job 45 (flowers)\n"
                        "job 42 (flowers): queued, position 2\n"
                 "job 42 (flowers): running\n"
                        "epoch 1/2  loss 0.8000  acc 0.6000  100 img/s  1.5 s\n"
                        "warn: 2 images unreadable, skipped\n"
                        "job 42 (flowers) succeeded: 2 epochs\n");
    /* A missing data folder: refused before it is queued, as a usage error
     * (--dry-run prints the document, with the same words as a warning). */
    RUN(&r, d, cwd, 0, "submit", "--data", "nothere");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.out, "");
    snprintf(want, sizeof want, "vggtune: submit: --data %s/nothere: no such directory\n"
             "Try 'vggtune submit --help'.\n", cwd);
    VT_CHECK_STR(r.err, want);
    RUN(&r, d, cwd, 0, "submit", "--data", "nothere", "--dry-run");
    VT_CHECK_INT(r.status, 0);
    snprintf(want, sizeof want, "vggtune: warning: --data %s/nothere: no such directory; the "
             "job will fail unless that changes\n", cwd);
    VT_CHECK_STR(r.err, want);
    /* Its outputs would become a class of the data. */
    RUN(&r, d, cwd, 0, "submit", "--data", "flowers/train", "--out", "flowers/train/run");
    VT_CHECK_INT(r.status, 2);
    snprintf(want, sizeof want, "vggtune: submit: output %s/flowers/train/run is inside "
             "data.train: its files would be read as one more class; give an output "
             "directory outside the data (--out)\nTry 'vggtune submit --help'.\n", cwd);
    VT_CHECK_STR(r.err, want);
    RUN(&r, d, cwd, 0, "submit", "--data", "flowers/train", "--epochs", "0");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: submit: epochs must be an integer from 1 to 100000 "
                        "(--epochs)\nTry 'vggtune submit --help'.\n");

    RUN(&r, d, cwd, 0, "watch", "43");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.out, "job 43 (x): running\n");
    VT_CHECK_STR(r.err, "vggtune: job 43 (x) failed: no images in /d/train\n");
    RUN(&r, d, cwd, 0, "watch", "99");
    VT_CHECK_INT(r.status, 1);
    VT_CHECK_STR(r.err, "vggtune: no job 99\n");
    RUN(&r, d, cwd, 0, "--json", "watch", "42");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "{\"id\":2,\"event\":\"state\",", 24) == 0);
    VT_CHECK(!strchr(r.out, '\r'));
    VT_CHECK_CONTAINS(r.out, "\n{\"id\":2,\"ok\":true,\"event\":\"end\"");
    RUN(&r, d, cwd, 0, "watch", "44");
    VT_CHECK_INT(r.status, 3);
    VT_CHECK_CONTAINS(r.err, "vggtune: lost the connection to vggtuned while watching job 44");
    VT_CHECK_CONTAINS(r.err, "'vggtune watch 44'");

    /* A symbolic link named on the command line is the user's choice: it is
     * sent resolved (the daemon does not follow links); a missing file as
     * the absolute path, for the daemon to report. */
    snprintf(want, sizeof want, "%s/real.jpg", cwd);
    write_text(want, "x");
    snprintf(want, sizeof want, "%s/link.jpg", cwd);
    VT_CHECK(symlink("real.jpg", want) == 0);
    snprintf(want, sizeof want, "%s/flowerlink", cwd);
    VT_CHECK(symlink("flowers", want) == 0);
    RUN(&r, d, cwd, 0, "predict", "42", "a.jpg", "link.jpg", "-k", "1");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.out, "a.jpg:  daisy 0.9300\n");
    /* A slow prediction need not be behind a training step (1100 images on
     * an idle CPU daemon): the notice says what is true either way. */
    RUN(&r, d, cwd, 0, "predict", "46", "a.jpg", "-k", "1");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_STR(r.err, "vggtune: waiting for vggtuned: it classifies the images a batch at "
                        "a time, in turns with the running jobs, and many images take a "
                        "while\n");
    RUN(&r, d, cwd, 0, "eval", "42", "flowerlink");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "images 2  accuracy 1.0000  loss 0.1000\n", 39) == 0);
    /* Its progress, on a terminal: a live line, taken off before the
     * report; with --json (or no terminal) nothing but the reply. */
    RUN(&r, d, cwd, 1, "eval", "47", "flowerlink");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "\r\033[Kevaluating [##########..........] 1/2 images"
                            "\r\033[Kevaluating [####################] 2/2 images"
                            "\r\033[Kimages 2  accuracy 1.0000", 125) == 0);
    RUN(&r, d, cwd, 1, "--json", "eval", "47", "flowerlink");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "{\"id\":", 6) == 0 && !strstr(r.out, "progress"));

    fake_join(d);
    /* What the daemon received. */
    const cJSON *req;
    int submits = 0, predicts = 0, evals = 0;
    cJSON_ArrayForEach(req, d->log) {
        if (strcmp(op_of(req), "submit") == 0 && submits++ == 0) {
            const cJSON *job = cJSON_GetObjectItem(req, "job");
            VT_CHECK_STR(sval(job, "data.train"), path);
            VT_CHECK_INT(nval(job, "epochs"), 3);
            VT_CHECK_STR(sval(job, "name"), "flowers");
            snprintf(want, sizeof want, "%s/runs/flowers", cwd);
            VT_CHECK_STR(sval(job, "output"), want);
        } else if (strcmp(op_of(req), "predict") == 0) {
            predicts++;
            snprintf(want, sizeof want, "%s/a.jpg", cwd);
            VT_CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(req, "images"), 0)->valuestring,
                         want);
            if (predicts == 1) {
                char *real;
                snprintf(want, sizeof want, "%s/real.jpg", cwd);
                real = realpath(want, NULL);
                VT_CHECK_STR(cJSON_GetArrayItem(cJSON_GetObjectItem(req, "images"), 1)
                                 ->valuestring, real ? real : "?");
                free(real);
            }
            VT_CHECK_INT(nval(req, "top"), 1);
            VT_CHECK_INT(nval(req, "job"), predicts == 1 ? 42 : 46);
        } else if (strcmp(op_of(req), "eval") == 0) {
            char *real;
            evals++;
            snprintf(want, sizeof want, "%s/flowers", cwd);
            real = realpath(want, NULL);
            VT_CHECK_STR(sval(req, "data"), real ? real : "?");
            free(real);
        } else if (strcmp(op_of(req), "list") == 0) {
            VT_CHECK(cJSON_IsBool(cJSON_GetObjectItem(req, "all")));
        }
    }
    VT_CHECK_INT(submits, 3); /* flowers, huge-id, and the watched one */
    VT_CHECK_INT(predicts, 2);
    VT_CHECK_INT(evals, 3);
    fake_stop(d);
}

/* Answers predict requests image by image (class "c<digits of the name>"),
 * refusing more images than the protocol allows, as the daemon does. */
static void script_predict(fake_daemon *d, int fd)
{
    const cJSON *req;
    if (fake_hello(d, fd) < 0)
        return;
    while ((req = fake_recv(d, fd))) {
        const cJSON *imgs = cJSON_GetObjectItem(req, "images"), *it;
        cJSON *body, *preds;
        if (cJSON_GetArraySize(imgs) > VT_PROTO_MAX_IMAGES) {
            fake_error(fd, req, VT_EINVAL, "images must be an array of 1 to 1024 paths");
            continue;
        }
        body = cJSON_CreateObject();
        preds = cJSON_AddArrayToObject(body, "predictions");
        cJSON_ArrayForEach(it, imgs) {
            char one[512];
            const char *base = strrchr(it->valuestring, '/') + 1;
            snprintf(one, sizeof one,
                     "{\"image\":\"%s\",\"top\":[{\"class\":\"c%.5s\",\"index\":0,"
                     "\"probability\":0.5}]}", it->valuestring, base + 3);
            cJSON_AddItemToArray(preds, fake_json(one));
        }
        fake_ok(fd, req, body);
    }
}

/* More images than one request may name: the client sends batches of at
 * most VT_PROTO_MAX_IMAGES and shows every result in order, with --json as
 * one reply (one valid JSON document). */
static void test_predict_batches(vt_backend *be)
{
    enum { N = 2 * VT_PROTO_MAX_IMAGES + 52 };
    const char *cwd = vt_test_tmpdir("batches");
    fake_daemon *d = NULL;
    char **argv = calloc(N + 8, sizeof *argv), sock[256], want[64];
    capture out, err;
    int sizes[8], nreq = 0;
    (void)be;

    VT_CHECK(argv && fake_start(&d, cwd, script_predict, NULL, 2) == 0);
    snprintf(sock, sizeof sock, "--socket=%s", d->path);
    for (int json = 0; json < 2; json++) {
        vt_cli cli = {.tty = 0, .width = 100, .cwd = cwd};
        int argc = 0, status;
        argv[argc++] = "vggtune";
        argv[argc++] = sock;
        if (json)
            argv[argc++] = "--json";
        argv[argc++] = "predict";
        argv[argc++] = "7";
        for (int i = 0; i < N; i++) {
            char name[32];
            snprintf(name, sizeof name, "img%05d.png", i);
            argv[argc++] = strdup(name);
        }
        cap_open(&out);
        cap_open(&err);
        cli.out = out.f;
        cli.err = err.f;
        status = vt_cli_main(&cli, argc, argv);
        VT_CHECK_INT(status, 0);
        VT_CHECK_STR(cap_text(&err), "");
        if (!json) {
            const char *line = cap_text(&out);
            for (int i = 0; i < N && line; i++) {
                snprintf(want, sizeof want, "img%05d.png:  c%05d 0.5000\n", i, i);
                VT_CHECK(strncmp(line, want, strlen(want)) == 0);
                line = strchr(line, '\n') + 1;
            }
            VT_CHECK_STR(line, "");
        } else {
            const char *text = cap_text(&out);
            cJSON *all = cJSON_Parse(text), *preds = cJSON_GetObjectItem(all, "predictions");
            VT_CHECK(strchr(text, '\n') == text + strlen(text) - 1); /* one line */
            VT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(all, "ok")));
            VT_CHECK_INT(cJSON_GetArraySize(preds), N);
            for (int i = 0; i < N; i++) {
                snprintf(want, sizeof want, "%s/img%05d.png", cwd, i);
                VT_CHECK_STR(cJSON_GetObjectItem(cJSON_GetArrayItem(preds, i), "image")
                                 ->valuestring,
                             want);
            }
            cJSON_Delete(all);
        }
        cap_close(&out);
        cap_close(&err);
        for (int i = argc - N; i < argc; i++)
            free(argv[i]);
    }
    fake_join(d);
    const cJSON *req;
    cJSON_ArrayForEach(req, d->log) {
        if (strcmp(op_of(req), "predict") == 0 && nreq < 8)
            sizes[nreq++] = cJSON_GetArraySize(cJSON_GetObjectItem(req, "images"));
    }
    VT_CHECK_INT(nreq, 6);
    for (int i = 0; i < nreq; i++)
        VT_CHECK_INT(sizes[i], i % 3 == 2 ? 52 : VT_PROTO_MAX_IMAGES);
    fake_stop(d);
    free(argv);
}

static void test_commands_offline(vt_backend *be)
{
    const char *cwd = vt_test_tmpdir("offline");
    run_result r;
    char want[1024];
    (void)be;

    /* No daemon: exit 3, and the message says what to do. */
    RUN(&r, NULL, cwd, 0, "list");
    VT_CHECK_INT(r.status, 3);
    snprintf(want, sizeof want, "vggtune: vggtuned is not running: no socket at "
             "%s/none.sock (start it with 'vggtuned', or the service with 'systemctl start vggtuned.socket')\n", cwd);
    VT_CHECK_STR(r.err, want);
    VT_CHECK_STR(r.out, "");
    RUN(&r, NULL, cwd, 0, "watch", "42");
    VT_CHECK_INT(r.status, 3);
    /* --socket naming a file that is not a socket */
    {
        char file[512];
        snprintf(file, sizeof file, "%s/red.png", cwd);
        FILE *f = fopen(file, "w");
        VT_CHECK(f != NULL);
        fclose(f);
        RUN(&r, NULL, cwd, 0, "--socket", file, "list");
        VT_CHECK_INT(r.status, 3);
        snprintf(want, sizeof want, "vggtune: %s is not a socket: give vggtuned's (--socket, or "
                 "$VGGTUNE_SOCKET)\n", file);
        VT_CHECK_STR(r.err, want);
    }

    /* Usage errors: exit 2 with a pointer to --help, before any connection. */
    RUN(&r, NULL, cwd, 0, "frobnicate");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: unknown command 'frobnicate'\nTry 'vggtune --help'.\n");
    RUN(&r, NULL, cwd, 0, "watch", "abc");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: watch: 'abc' is not a job number\n"
                        "Try 'vggtune watch --help'.\n");
    RUN(&r, NULL, cwd, 0, "watch");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "cancel", "1", "2");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "predict", "1");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "predict", "1", "a.jpg", "--top", "0");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "predict", "1", "a.jpg", "--top", "99");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: predict: --top must be from 1 to 64\n"
                        "Try 'vggtune predict --help'.\n");
    RUN(&r, NULL, cwd, 0, "eval", "1");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "list", "--bogus");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: list: unknown option '--bogus'\nTry 'vggtune list --help'.\n");
    RUN(&r, NULL, cwd, 0, "--nope");
    VT_CHECK_INT(r.status, 2);
    RUN(&r, NULL, cwd, 0, "submit", "--spec", "nope.json");
    VT_CHECK_INT(r.status, 2);
    snprintf(want, sizeof want, "vggtune: submit: --spec: %s/nope.json: no such file\n"
             "Try 'vggtune submit --help'.\n", cwd);
    VT_CHECK_STR(r.err, want);
    RUN(&r, NULL, cwd, 0, "submit", "--data", "x", "--init-head", "4", "--init", "m");
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_STR(r.err, "vggtune: submit: give --init or --init-head, not both\n"
                        "Try 'vggtune submit --help'.\n");
    run_cli(&r, NULL, cwd, 0, (const char *[]){NULL});
    VT_CHECK_INT(r.status, 2);
    VT_CHECK_CONTAINS(r.err, "usage: vggtune");

    /* Help and version: exit 0, on stdout. */
    RUN(&r, NULL, cwd, 0, "--help");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK_CONTAINS(r.out, "usage: vggtune");
    static const char *const cmds[] = {"submit", "list", "status", "watch", "cancel",
                                       "predict", "eval"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char usage[64];
        snprintf(usage, sizeof usage, "usage: vggtune %s", cmds[i]);
        RUN(&r, NULL, cwd, 0, cmds[i], "--help");
        VT_CHECK_INT(r.status, 0);
        VT_CHECK_CONTAINS(r.out, usage);
        RUN(&r, NULL, cwd, 0, "help", cmds[i]);
        VT_CHECK_CONTAINS(r.out, usage);
    }
    RUN(&r, NULL, cwd, 0, "--version");
    VT_CHECK_INT(r.status, 0);
    VT_CHECK(strncmp(r.out, "vggtune ", 8) == 0);
    /* with --json, before or after it, an object like the other replies */
    for (int k = 0; k < 2; k++) {
        if (k)
            RUN(&r, NULL, cwd, 0, "--version", "--json");
        else
            RUN(&r, NULL, cwd, 0, "--json", "--version");
        VT_CHECK_INT(r.status, 0);
        cJSON *v = cJSON_Parse(r.out);
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(v, "version");
        VT_CHECK_STR(cJSON_IsString(ver) ? ver->valuestring : "(none)", VT_VERSION);
        VT_CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(v, "protocol")));
        cJSON_Delete(v);
    }

    /* --dry-run prints the document and needs no daemon. */
    snprintf(want, sizeof want, "%s/imgs", cwd);
    mkdir(want, 0755);
    RUN(&r, NULL, cwd, 0, "submit", "--data", "imgs", "--dry-run", "--json");
    VT_CHECK_INT(r.status, 0);
    {
        mode_t mask = umask(0);
        umask(mask);
        snprintf(want, sizeof want, "{\"data\":{\"train\":\"%s/imgs\"},\"name\":\"imgs\","
                 "\"umask\":%d,\"output\":\"%s/runs/imgs\"}\n", cwd, (int)(mask & 0777), cwd);
    }
    VT_CHECK_STR(r.out, want);
}

/* A watch stream that never ends: the state, then silence until the client
 * goes. */
static void script_endless_watch(fake_daemon *d, int fd)
{
    const cJSON *req;
    if (fake_hello(d, fd) < 0 || !(req = fake_recv(d, fd)))
        return;
    fake_event(fd, req, "state", fake_json("{\"job\":{\"id\":42,\"name\":\"flowers\","
                                           "\"state\":\"running\"}}"));
    while (fake_recv(d, fd))
        ;
}

static vt_cli *intr_cli;

/* As main.c's handler: Ctrl-C while watching sets the flag. */
static void on_test_sigint(int sig)
{
    (void)sig;
    if (intr_cli && intr_cli->watching)
        intr_cli->interrupted = 1;
}

/* Sends SIGINT to the thread *arg once it is watching (up to 10 s). */
static void *interrupt_later(void *arg)
{
    for (int i = 0; i < 1000 && !intr_cli->watching; i++)
        usleep(10 * 1000);
    pthread_kill(*(pthread_t *)arg, SIGINT);
    return NULL;
}

/* Ctrl-C during a watch: exit status 130, as documented, and the job goes
 * on. */
static void test_watch_interrupted(vt_backend *be)
{
    const char *cwd = vt_test_tmpdir("intr");
    static const char *const cmds[] = {"watch", "submit"};
    char sock[256], *argv[] = {"vggtune", sock, "watch", "42", NULL};
    struct sigaction sa, old;
    fake_daemon *d = NULL;
    pthread_t self = pthread_self(), t;
    capture out, err;
    vt_cli cli = {0};
    run_result r;
    (void)be;

    VT_CHECK(fake_start(&d, cwd, script_endless_watch, NULL, 1) == 0);
    snprintf(sock, sizeof sock, "--socket=%s", d->path);
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_test_sigint;
    sigaction(SIGINT, &sa, &old);
    intr_cli = &cli;
    cap_open(&out);
    cap_open(&err);
    cli.out = out.f;
    cli.err = err.f;
    cli.cwd = cwd;
    VT_CHECK(pthread_create(&t, NULL, interrupt_later, &self) == 0);
    VT_CHECK_INT(vt_cli_main(&cli, 4, argv), 130);
    pthread_join(t, NULL);
    sigaction(SIGINT, &old, NULL);
    intr_cli = NULL;
    VT_CHECK_STR(cap_text(&out), "job 42 (flowers): running\n");
    VT_CHECK_STR(cap_text(&err), "vggtune: stopped watching; job 42 goes on ('vggtune "
                                 "cancel 42' stops it)\n");
    VT_CHECK(!cli.watching);
    cap_close(&out);
    cap_close(&err);
    fake_stop(d);
    /* ... and the help says so */
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        RUN(&r, NULL, cwd, 0, cmds[i], "--help");
        VT_CHECK_CONTAINS(r.out, "130");
    }
    RUN(&r, NULL, cwd, 0, "--help");
    VT_CHECK_CONTAINS(r.out, "130 Ctrl-C stopped\nwatch or submit --watch");
}

/* The hint when the socket refuses us names its actual group, and asks to
 * be added to it only where that would help. */
static void test_denied_msg(vt_backend *be)
{
    struct stat st;
    char buf[1024];
    (void)be;

    memset(&st, 0, sizeof st);
    st.st_mode = S_IFSOCK | 0660;
    st.st_uid = 0;
    st.st_gid = 1234;
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, "root", "trainers", 0, 0);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: ask an administrator to add you to "
                      "the 'trainers' group");
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, "root", NULL, 0, 0);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: ask an administrator to add you to "
                      "the '1234' group");
    /* group root: being added to it is not the way in */
    st.st_gid = 0;
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, "root", "root", 0, 0);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: its group is root, not a group of "
                      "vggtuned's users; ask an administrator to start vggtuned with "
                      "--socket-group naming one, and to add you to it");
    /* our own (primary) group: the mode is what refuses */
    st.st_mode = S_IFSOCK | 0600;
    st.st_uid = 1001;
    st.st_gid = 1000;
    vt_proto_denied_msg(buf, sizeof buf, "/tmp/vggtune-1001.sock", &st, "bob", "alice", 1, 1);
    VT_CHECK_STR(buf, "permission denied on /tmp/vggtune-1001.sock: you are in its group "
                      "'alice', but its mode (0600) does not let the group connect; it is "
                      "bob's socket: ask them or an administrator");
    st.st_uid = 0;
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, NULL, "alice", 1, 1);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: you are in its group 'alice', but its "
                      "mode (0600) does not let the group connect; ask an administrator");
    /* in the group, and the mode lets it in: something above refuses */
    st.st_mode = S_IFSOCK | 0660;
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, "root", "alice", 1, 1);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: you are in its group 'alice' and its "
                      "mode (0660) lets the group connect; a folder on the way to it is closed "
                      "to you (ask an administrator)");
    /* added to the group after logging in */
    vt_proto_denied_msg(buf, sizeof buf, "/run/v.sock", &st, "root", "trainers", 0, 1);
    VT_CHECK_STR(buf, "permission denied on /run/v.sock: you were added to its group "
                      "'trainers' after this session began: log in again (or run 'newgrp "
                      "trainers')");
    vt_proto_denied_msg(buf, sizeof buf, "/srv/x/v.sock", NULL, NULL, NULL, 0, 0);
    VT_CHECK_STR(buf, "permission denied on /srv/x/v.sock: a folder on the way to it is closed "
                      "to you (ask an administrator)");
}

int main(int argc, char **argv)
{
    static const vt_test_case cases[] = {
        {"options", test_options, 0},
        {"abspath", test_abspath, 0},
        {"submit_defaults", test_submit_defaults, 0},
        {"submit_spec_override", test_submit_spec_override, 0},
        {"submit_bad_values", test_submit_bad_values, 0},
        {"check_paths", test_check_paths, 0},
        {"exit_codes", test_exit_codes, 0},
        {"render_list", test_render_list, 0},
        {"render_width", test_render_width, 0},
        {"render_status", test_render_status, 0},
        {"render_job", test_render_job, 0},
        {"render_job_ends", test_render_job_ends, 0},
        {"render_lines", test_render_lines, 0},
        {"render_predict_eval", test_render_predict_eval, 0},
        {"watcher", test_watcher, 0},
        {"commands", test_commands, 0},
        {"commands_offline", test_commands_offline, 0},
        {"denied_msg", test_denied_msg, 0},
        {"watch_interrupted", test_watch_interrupted, 0},
        {"predict_batches", test_predict_batches, 0},
    };
    VT_TEST_MAIN(cases);
}

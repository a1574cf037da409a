/* test_jobspec.c - the job document: defaults, the exact field names,
 * refusals that name the field, printing and the learning-rate schedule. */
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../engine/jobspec.h"
#include "vt_test.h"

static int parse(vt_jobspec *s, const char *json) { return vt_jobspec_parse(s, json, strlen(json)); }

/* The document from the specification, field for field. */
static void test_example(vt_backend *be)
{
    const char *doc =
        "{\"name\": \"flowers\", \"mode\": \"finetune\","
        " \"data\": {\"train\": \"/data/flowers/train\", \"val\": \"/data/flowers/val\","
        "  \"val_split\": 0.0, \"image_size\": 224, \"preprocess\": \"auto\", \"shuffle\": true},"
        " \"weights\": \"/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5\","
        " \"init\": null, \"head\": {\"dense\": [1024, 128], \"dropout\": 0.0},"
        " \"optimizer\": {\"lr\": 0.001, \"momentum\": 0.9, \"nesterov\": true, \"decay\": 1e-6},"
        " \"epochs\": 10, \"batch_size\": 32, \"seed\": 1, \"precision\": \"fp32\","
        " \"output\": \"/home/me/runs/flowers\"}";
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, doc));
    VT_CHECK_STR(s.name, "flowers");
    VT_CHECK_INT(s.trainable_blocks, 1);
    VT_CHECK_STR(s.train_dir, "/data/flowers/train");
    VT_CHECK_STR(s.val_dir, "/data/flowers/val");
    VT_CHECK_INT(s.image_size, 224);
    VT_CHECK_INT(s.preprocess, -1);
    VT_CHECK(s.init == NULL);
    VT_CHECK_INT(s.nhidden, 2);
    VT_CHECK_INT(s.hidden[0], 1024);
    VT_CHECK_INT(s.hidden[1], 128);
    VT_CHECK_NEAR(s.lr, 0.001, 0);
    VT_CHECK_NEAR(s.decay, 1e-6, 0);
    VT_CHECK(s.nesterov);
    VT_CHECK_INT(s.precision, VT_PREC_FP32);
    VT_CHECK_STR(s.output, "/home/me/runs/flowers");
    /* Printing and parsing again gives the same document. */
    char *a = vt_jobspec_to_json(&s);
    vt_jobspec t;
    VT_CHECK_OK(parse(&t, a));
    char *b = vt_jobspec_to_json(&t);
    VT_CHECK_STR(a, b);
    free(a);
    free(b);
    vt_jobspec_free(&t);
    vt_jobspec_free(&s);
}

static void test_defaults(vt_backend *be)
{
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\"}"));
    VT_CHECK_INT(s.trainable_blocks, 1);
    VT_CHECK_INT(s.nhidden, 2);
    VT_CHECK_INT(s.epochs, 10);
    VT_CHECK_INT(s.batch_size, 32);
    VT_CHECK_INT(s.image_size, 224);
    VT_CHECK(s.shuffle);
    vt_jobspec_free(&s);
    /* bottleneck: Dense 256 + dropout 0.5 */
    VT_CHECK_OK(parse(&s, "{\"mode\":\"bottleneck\",\"data\":{\"train\":\"/d\"},\"output\":\"/o\"}"));
    VT_CHECK_INT(s.trainable_blocks, 0);
    VT_CHECK_INT(s.nhidden, 1);
    VT_CHECK_INT(s.hidden[0], 256);
    VT_CHECK_NEAR(s.dropout, 0.5, 1e-7);
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"trainable_blocks\":3,\"data\":{\"train\":\"/d\"},\"output\":\"/o\"}"));
    VT_CHECK_INT(s.trainable_blocks, 3);
    VT_CHECK_STR(vt_jobspec_mode_name(s.trainable_blocks), "blocks3");
    vt_jobspec_free(&s);
}

/* 4999 characters: with its leading '/', a 5000-byte path */
#define X10_ "aaaaaaaaaa"
#define X100_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ X10_
#define X1000_ X100_ X100_ X100_ X100_ X100_ X100_ X100_ X100_ X100_ X100_
#define LONG_PATH X1000_ X1000_ X1000_ X1000_ X100_ X100_ X100_ X100_ X100_ X100_ X100_ X100_ \
    X100_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ X10_ "aaaaaaaaa"

static void test_refusals(vt_backend *be)
{
    static const struct { const char *doc, *msg; } bad[] = {
        {"[]", "must be a JSON object"},
        {"{", "not valid JSON"},
        {"{\"data\":{\"train\":\"/d\"}}", "output is required"},
        {"{\"output\":\"/o\"}", "data is required"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":5,\"epochs\":2}",
         "epochs appears twice"},
        {"{\"data\":{\"train\":\"/d\",\"image_size\":32,\"image_size\":64},\"output\":\"/o\"}",
         "data.image_size appears twice"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"x\":[{\"a\":1,\"a\":2}]}",
         "x[0].a appears twice"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"umask\":77}",
         "umask 77 (octal 115) would take the owner's own permissions away"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"umask\":512}",
         "umask must be an integer from 0 to 63, a decimal number"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"umask\":-1}",
         "umask must be an integer from 0 to 63, a decimal number"},
        {"{\"data\":{\"trian\":\"/d\"},\"output\":\"/o\"}", "unknown field data.trian"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epoch\":3}", "unknown field epoch"},
        {"{\"data\":{\"train\":\"/d\",\"image_size\":100},\"output\":\"/o\"}", "multiple of 32"},
        {"{\"data\":{\"train\":\"/d\",\"image_size\":\"224\"},\"output\":\"/o\"}", "data.image_size"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"optimizer\":{\"lr\":-1}}", "optimizer.lr"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"optimizer\":{\"lr\":0}}", "optimizer.lr"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":1.5}", "epochs must be an integer"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"batch_size\":0}", "batch_size"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"mode\":\"fine\"}", "mode must be one of"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"mode\":\"finetune\",\"trainable_blocks\":2}",
         "mode finetune means trainable_blocks 1"},
        {"{\"data\":{\"train\":\"/d\",\"val\":\"/v\",\"val_split\":0.2},\"output\":\"/o\"}", "not both"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"head\":{\"dense\":[0]}}", "head.dense[0]"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"head\":{\"dropout\":1}}", "head.dropout"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"precision\":\"fp16\"}", "precision must be"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"keep_best\":true}", "keep_best needs validation"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"init\":\"/a\",\"init_job\":3}", "not both"},
        {"{\"data\":{\"train\":\"\"},\"output\":\"/o\"}", "data.train must be a non-empty string"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/" LONG_PATH "\"}",
         "output is 5000 bytes long, over the 4095-byte limit of a path"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"name\":\"a/b\"}", "name must be"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"name\":\"\\u001b[2Jx\"}", "name must be"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"name\":\"a\\u007fb\"}", "name must be"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"optimizer\":{\"schedule\":{\"type\":\"exp\"}}}",
         "optimizer.schedule.type"},
        {"{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"optimizer\":{\"lr\":0.01,"
         "\"schedule\":{\"type\":\"cosine\",\"min_lr\":0.1}}}",
         "min_lr (0.1) must not exceed optimizer.lr (0.01)"},
    };
    (void)be;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vt_jobspec s;
        VT_CHECK_ERR(parse(&s, bad[i].doc), VT_EINVAL, bad[i].msg);
    }
}

/* One document and nothing after it but white space: a second document or a
 * stray paste is refused, naming where it starts, not silently dropped. */
static void test_trailing(vt_backend *be)
{
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\"}\n \t\r\n"));
    vt_jobspec_free(&s);
    VT_CHECK_ERR(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":1} "
                           "{\"epochs\":3} garbage"),
                 VT_EINVAL, "the job document goes on after its end, at line 1 (byte 49): "
                            "give one JSON object and nothing after it");
    VT_CHECK_ERR(parse(&s, "{\"data\":{\"train\":\"/d\"},\n\"output\":\"/o\"}\n\nx"),
                 VT_EINVAL, "at line 4 (byte 40)");
    VT_CHECK_ERR(vt_jobspec_parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\"}\0x", 39),
                 VT_EINVAL, "at line 1 (byte 37)");
}

/* A document of 90,000 fields (under the daemon's 1 MiB frame) is refused
 * at once for its size, before any pairwise check could take seconds on
 * the daemon's loop thread. */
static void test_many_fields(vt_backend *be)
{
    size_t cap = 90000 * 16 + 64, n = 0;
    char *doc = malloc(cap);
    vt_jobspec s;
    (void)be;
    VT_CHECK(doc != NULL);
    n += (size_t)snprintf(doc + n, cap - n, "{");
    for (int i = 0; i < 90000; i++)
        n += (size_t)snprintf(doc + n, cap - n, "%s\"k%d\":0", i ? "," : "", i);
    snprintf(doc + n, cap - n, "}");
    VT_CHECK_ERR(vt_jobspec_parse(&s, doc, strlen(doc)), VT_EINVAL,
                 "the job document has 90000 fields; no object of a job document has more "
                 "than 64");
    free(doc);
}

static void test_lr_schedule(vt_backend *be)
{
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":10,"
                          "\"optimizer\":{\"lr\":0.1,\"decay\":0.01}}"));
    /* Keras: lr / (1 + decay * iterations) */
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 0), 0.1, 1e-12);
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 100, 3), 0.1 / 2.0, 1e-12);
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":10,"
                          "\"optimizer\":{\"lr\":0.1,\"decay\":0,\"schedule\":{\"type\":\"step\","
                          "\"step_epochs\":3,\"gamma\":0.5}}}"));
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 2), 0.1, 1e-12);
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 3), 0.05, 1e-12);
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 7), 0.025, 1e-12);
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"epochs\":10,"
                          "\"optimizer\":{\"lr\":0.1,\"decay\":0,\"schedule\":\"cosine\"}}"));
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 0), 0.1, 1e-12);
    VT_CHECK_NEAR(vt_jobspec_lr(&s, 0, 5), 0.05, 1e-12);
    vt_jobspec_free(&s);
}

static void test_absolutize(vt_backend *be)
{
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"d/train\",\"val\":\"/v\"},\"output\":\"out\","
                          "\"weights\":\"w.h5\"}"));
    VT_CHECK_OK(vt_jobspec_absolutize(&s, "/home/me"));
    VT_CHECK_STR(s.train_dir, "/home/me/d/train");
    VT_CHECK_STR(s.val_dir, "/v");
    VT_CHECK_STR(s.output, "/home/me/out");
    VT_CHECK_STR(s.weights, "/home/me/w.h5");
    vt_jobspec_free(&s);
}

/* An output directory inside the data would be scanned as one more class;
 * compared as the paths resolve (a link into the data, "..", a part that
 * does not exist yet). */
static void test_output_in_data(vt_backend *be)
{
    const char *dir = vt_test_tmpdir("outdata");
    char doc[2048], path[1024];
    vt_jobspec s;
    (void)be;
    snprintf(path, sizeof path, "%s/ds", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/val", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/link", dir);
    VT_CHECK(symlink("ds", path) == 0);
    static const struct { const char *out; const char *err; } cases[] = {
        {"%s/ds/run", "is inside data.train"},
        {"%s/ds/", "is the same directory as data.train"},
        {"%s/link/new/run", "is inside data.train"},
        {"%s/elsewhere/../ds/a/b", "is inside data.train"},
        {"%s/val/run", "is inside data.val"},
        {"%s/ds-run", NULL},
        {"%s/runs/ds", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[1024];
        snprintf(out, sizeof out, cases[i].out, dir);
        snprintf(doc, sizeof doc, "{\"data\":{\"train\":\"%s/ds\",\"val\":\"%s/val\"},"
                 "\"output\":\"%s\"}", dir, dir, out);
        VT_CHECK_OK(parse(&s, doc));
        if (cases[i].err)
            VT_CHECK_ERR(vt_jobspec_check_output(&s), VT_EINVAL, cases[i].err);
        else
            VT_CHECK_OK(vt_jobspec_check_output(&s));
        vt_jobspec_free(&s);
    }
    /* The field named first, so that the client can name its flag. */
    snprintf(doc, sizeof doc, "{\"data\":{\"train\":\"%s/ds\"},\"output\":\"%s/ds/r\"}",
             dir, dir);
    VT_CHECK_OK(parse(&s, doc));
    VT_CHECK_ERR(vt_jobspec_check_output(&s), VT_EINVAL, "output ");
    VT_CHECK(strncmp(vt_error_msg(), "output ", 7) == 0);
    vt_jobspec_free(&s);
    /* overwrite: false unless given, and printed */
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"overwrite\":true}"));
    VT_CHECK(s.overwrite);
    char *text = vt_jobspec_to_json(&s);
    VT_CHECK_CONTAINS(text, "\"overwrite\":true");
    free(text);
    vt_jobspec_free(&s);
    VT_CHECK_ERR(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"overwrite\":1}"),
                 VT_EINVAL, "overwrite must be true or false");
}

/* out[n + 1]: an absolute path of n bytes, made of names of 200 bytes. */
static void long_path(char *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = i % 201 == 0 ? '/' : 'd';
    out[n] = '\0';
}

/* An output directory too long for the job's files below it, or with a
 * name too long for the file system, is refused up front, naming the field
 * and the limit, not left to fail as the first file is opened. */
static void test_output_length(vt_backend *be)
{
    static char out[PATH_MAX + 64], doc[PATH_MAX + 128];
    const size_t most = PATH_MAX - 1 - VT_OUTPUT_SUFFIX_MAX;
    char want[128];
    vt_jobspec s;
    (void)be;
    long_path(out, most);
    snprintf(doc, sizeof doc, "{\"data\":{\"train\":\"/d\"},\"output\":\"%s\"}", out);
    VT_CHECK_OK(parse(&s, doc));
    VT_CHECK_OK(vt_jobspec_check_output(&s));
    vt_jobspec_free(&s);
    const size_t over[] = {most + 1, PATH_MAX - 1}; /* (longer ones the parser refuses) */
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
        size_t n = over[i];
        long_path(out, n);
        snprintf(doc, sizeof doc, "{\"data\":{\"train\":\"/d\"},\"output\":\"%s\"}", out);
        VT_CHECK_OK(parse(&s, doc));
        snprintf(want, sizeof want, "output is %zu bytes long, over the %zu bytes an output "
                 "directory may have: a path may have at most %d", n, most, PATH_MAX - 1);
        VT_CHECK_ERR(vt_jobspec_check_output(&s), VT_EINVAL, want);
        VT_CHECK_CONTAINS(vt_error_msg(), "give a shorter directory");
        vt_jobspec_free(&s);
    }
    /* a name the file system cannot hold, anywhere in the path */
    static const struct { size_t len; const char *rest, *err; } names[] = {
        {NAME_MAX, "/run", NULL},
        {NAME_MAX + 1, "/run", "is 256 bytes, at most 255"},
        {NAME_MAX + 1, "", "is 256 bytes, at most 255"},
        {1000, "/run", "is 1000 bytes, at most 255"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char name[1001];
        memset(name, 'x', names[i].len);
        name[names[i].len] = '\0';
        snprintf(doc, sizeof doc, "{\"data\":{\"train\":\"/d\"},\"output\":\"/tmp/%s%s\"}",
                 name, names[i].rest);
        VT_CHECK_OK(parse(&s, doc));
        if (names[i].err) {
            VT_CHECK_ERR(vt_jobspec_check_output(&s), VT_EINVAL, names[i].err);
            VT_CHECK_CONTAINS(vt_error_msg(), "output has a name longer than the file system "
                              "allows: xxxx");
            VT_CHECK_CONTAINS(vt_error_msg(), "shorten that name");
        } else
            VT_CHECK_OK(vt_jobspec_check_output(&s));
        vt_jobspec_free(&s);
    }
}

/* Names and paths that are not UTF-8 are refused before the job trains:
 * its model records the document, and safetensors metadata is UTF-8. */
static void test_utf8(vt_backend *be)
{
    vt_jobspec s;
    (void)be;
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/caf\xc3\xa9\"},\"output\":\"/o\"}"));
    VT_CHECK_OK(vt_jobspec_check_utf8(&s));
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/caf\xe9\"},\"output\":\"/o\"}"));
    VT_CHECK_ERR(vt_jobspec_check_utf8(&s), VT_EINVAL, "data.train is not valid UTF-8");
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\xff\"}"));
    VT_CHECK_ERR(vt_jobspec_check_utf8(&s), VT_EINVAL, "output is not valid UTF-8");
    vt_jobspec_free(&s);
    VT_CHECK_OK(parse(&s, "{\"data\":{\"train\":\"/d\"},\"output\":\"/o\",\"name\":\"\xc3\"}"));
    VT_CHECK_ERR(vt_jobspec_check_utf8(&s), VT_EINVAL, "name is not valid UTF-8");
    vt_jobspec_free(&s);
}

static const vt_test_case cases[] = {
    {"example", test_example, 0},
    {"defaults", test_defaults, 0},
    {"refusals", test_refusals, 0},
    {"trailing", test_trailing, 0},
    {"many_fields", test_many_fields, 0},
    {"lr_schedule", test_lr_schedule, 0},
    {"absolutize", test_absolutize, 0},
    {"output_in_data", test_output_in_data, 0},
    {"output_length", test_output_length, 0},
    {"utf8", test_utf8, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

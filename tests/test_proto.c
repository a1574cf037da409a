/* test_proto.c - the wire protocol: the framer, request parsing, the typed
 * field readers, the message builders, and the blocking client against a
 * scripted fake daemon (tests/fake_vggtuned.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/utf8.h"
#include "../proto/proto.h"
#include "fake_vggtuned.h"
#include "vt_test.h"

/* ---- framer ------------------------------------------------------------ */

/* Takes every complete line out of f, joined with '|' into out; returns
 * how many, or the error (VT_ETOOBIG: *over set, the lines still counted). */
static int take_all_over(vt_framer *f, char *out, size_t len, int *over)
{
    char *line;
    size_t n;
    int rc, count = 0;
    out[0] = '\0';
    while ((rc = vt_framer_next(f, &line, &n)) == 1) {
        if (strlen(line) != n)
            return -100;
        snprintf(out + strlen(out), len - strlen(out), "%s%s", count ? "|" : "", line);
        free(line);
        count++;
    }
    if (rc == VT_ETOOBIG && over) {
        *over = 1;
        return count;
    }
    return rc < 0 ? rc : count;
}

static int take_all(vt_framer *f, char *out, size_t len)
{
    return take_all_over(f, out, len, NULL);
}

static void test_framer_split(vt_backend *be)
{
    vt_framer f;
    char out[256];
    (void)be;
    vt_framer_init(&f, 64);
    VT_CHECK_OK(vt_framer_feed(&f, "{\"a\"", 4));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 0); /* nothing complete yet */
    VT_CHECK_OK(vt_framer_feed(&f, ":1}\n{\"b\":2}\n{\"c", 15));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 2);
    VT_CHECK_STR(out, "{\"a\":1}|{\"b\":2}");
    VT_CHECK_OK(vt_framer_feed(&f, "\":3}\r", 5));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 0); /* the \r alone ends nothing */
    VT_CHECK_OK(vt_framer_feed(&f, "\n", 1));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 1);
    VT_CHECK_STR(out, "{\"c\":3}"); /* CRLF: both removed */
    vt_framer_free(&f);
    vt_framer_free(&f); /* twice is fine */
}

static void test_framer_bytewise(vt_backend *be)
{
    static const char stream[] = "one\ntwo\r\n\nthree\n";
    vt_framer f;
    char out[64], got[256] = "";
    (void)be;
    vt_framer_init(&f, 16);
    for (size_t i = 0; i < sizeof stream - 1; i++) {
        VT_CHECK_OK(vt_framer_feed(&f, stream + i, 1));
        int n = take_all(&f, out, sizeof out);
        VT_CHECK(n >= 0);
        if (n > 0) {
            if (got[0])
                strcat(got, "|");
            strcat(got, out);
        }
    }
    VT_CHECK_STR(got, "one|two|three");
    vt_framer_free(&f);
}

static void test_framer_empty_lines(vt_backend *be)
{
    vt_framer f;
    char out[256];
    (void)be;
    vt_framer_init(&f, 64);
    VT_CHECK_OK(vt_framer_feed(&f, "\n\r\n  \t\n{}\n\n", 12));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 1);
    VT_CHECK_STR(out, "{}");
    VT_CHECK_INT(take_all(&f, out, sizeof out), 0);
    vt_framer_free(&f);
}

static void test_framer_limit(vt_backend *be)
{
    char line[64], out[256], *taken = NULL;
    vt_framer f;
    size_t n = 0;
    int over = 0;
    (void)be;

    /* Exactly max bytes, newline included, passes; CRLF counts both. */
    vt_framer_init(&f, 16);
    memset(line, 'a', 15);
    line[15] = '\n';
    VT_CHECK_OK(vt_framer_feed(&f, line, 16));
    memset(line, 'b', 14);
    memcpy(line + 14, "\r\n", 2);
    VT_CHECK_OK(vt_framer_feed(&f, line, 16));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 2);
    VT_CHECK_STR(out, "aaaaaaaaaaaaaaa|bbbbbbbbbbbbbb");
    /* Many short lines in one feed are fine however many bytes in all. */
    for (int i = 0; i < 10; i++)
        memcpy(line + 6 * i, "12345\n", 6);
    VT_CHECK_OK(vt_framer_feed(&f, line, 60));
    VT_CHECK_INT(take_all(&f, out, sizeof out), 10);
    vt_framer_free(&f);

    /* One byte over: refused, and refused from then on; the lines before
     * it can still be taken. */
    vt_framer_init(&f, 16);
    memcpy(line, "ok\n", 3);
    memset(line + 3, 'c', 16);
    line[19] = '\n';
    VT_CHECK_ERR(vt_framer_feed(&f, line, 20), VT_ETOOBIG, "16");
    VT_CHECK_ERR(vt_framer_feed(&f, "x\n", 2), VT_ETOOBIG, NULL);
    VT_CHECK_INT(take_all_over(&f, out, sizeof out, &over), 1);
    VT_CHECK_STR(out, "ok");
    VT_CHECK(over); /* then next() reports the overflow too */
    VT_CHECK_ERR(vt_framer_next(&f, &taken, &n), VT_ETOOBIG, NULL);
    VT_CHECK_ERR(vt_framer_feed(&f, "y\n", 2), VT_ETOOBIG, NULL);
    vt_framer_free(&f);

    /* Refused as soon as the pending line cannot fit, newline or not. */
    vt_framer_init(&f, 16);
    memset(line, 'd', 16);
    VT_CHECK_OK(vt_framer_feed(&f, line, 10));
    VT_CHECK_ERR(vt_framer_feed(&f, line, 6), VT_ETOOBIG, NULL);
    VT_CHECK_ERR(vt_framer_next(&f, &taken, &n), VT_ETOOBIG, NULL);
    vt_framer_free(&f);

    /* Over max with CRLF. */
    vt_framer_init(&f, 16);
    memset(line, 'e', 15);
    memcpy(line + 15, "\r\n", 2);
    VT_CHECK_ERR(vt_framer_feed(&f, line, 17), VT_ETOOBIG, NULL);
    vt_framer_free(&f);

    /* A long line that began in an earlier feed, after whole lines. */
    vt_framer_init(&f, 16);
    VT_CHECK_OK(vt_framer_feed(&f, "a\nbbbbbbbbbb", 12));
    VT_CHECK_ERR(vt_framer_feed(&f, "bbbbbb\n", 7), VT_ETOOBIG, NULL);
    over = 0;
    VT_CHECK_INT(take_all_over(&f, out, sizeof out, &over), 1);
    VT_CHECK_STR(out, "a");
    VT_CHECK(over);
    vt_framer_free(&f);
}

/* The real limit, at full size. */
static void test_framer_max_frame(vt_backend *be)
{
    size_t max = VT_PROTO_MAX_FRAME;
    char *big = malloc(max + 2), *line = NULL;
    vt_framer f;
    size_t n = 0;
    (void)be;
    VT_CHECK(big);
    memset(big, 'z', max + 1);
    big[max - 1] = '\n';
    vt_framer_init(&f, 0); /* 0: the protocol's limit */
    VT_CHECK_OK(vt_framer_feed(&f, big, max / 2));
    VT_CHECK_OK(vt_framer_feed(&f, big + max / 2, max - max / 2));
    VT_CHECK_INT(vt_framer_next(&f, &line, &n), 1);
    VT_CHECK_INT(n, max - 1);
    free(line);
    big[max - 1] = 'z';
    big[max] = '\n';
    VT_CHECK_ERR(vt_framer_feed(&f, big, max + 1), VT_ETOOBIG, NULL);
    vt_framer_free(&f);
    free(big);
}

/* ---- parse ------------------------------------------------------------- */

static int parse(const char *text, cJSON **root, const cJSON **id, const char **op)
{
    return vt_proto_parse(text, strlen(text), root, id, op);
}

static void test_parse_good(vt_backend *be)
{
    cJSON *root = NULL;
    const cJSON *id;
    const char *op;
    (void)be;
    VT_CHECK_OK(parse("{\"id\": 7, \"op\": \"list\", \"all\": true}", &root, &id, &op));
    VT_CHECK(cJSON_IsNumber(id) && id->valuedouble == 7);
    VT_CHECK_STR(op, "list");
    VT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(root, "all")));
    cJSON_Delete(root);
    VT_CHECK_OK(parse("  {\"op\":\"status\",\"id\":\"req-1\"}  \r", &root, &id, &op));
    VT_CHECK(cJSON_IsString(id));
    VT_CHECK_STR(id->valuestring, "req-1");
    VT_CHECK_STR(op, "status");
    cJSON_Delete(root);
    VT_CHECK_OK(parse("{\"id\":-3,\"op\":\"x\"}", &root, &id, &op));
    cJSON_Delete(root);
    /* 64 bytes of id is the limit */
    char text[256];
    snprintf(text, sizeof text, "{\"id\":\"%064d\",\"op\":\"list\"}", 0);
    VT_CHECK_OK(parse(text, &root, &id, &op));
    cJSON_Delete(root);
}

static void test_parse_bad(vt_backend *be)
{
    cJSON *root = NULL;
    const cJSON *id = NULL;
    const char *op = NULL;
    char text[256];
    (void)be;

    VT_CHECK_ERR(parse("{\"id\":1,", &root, &id, &op), VT_EPROTO, "invalid JSON");
    VT_CHECK(!root && !id && !op);
    VT_CHECK_ERR(parse("{\"id\":1,\"op\":\"a\"} {\"id\":2}", &root, &id, &op), VT_EPROTO,
                 "invalid JSON");
    cJSON_Delete(root);
    VT_CHECK_ERR(vt_proto_parse("{\"id\":1,\"op\":\"a\"}\0xx", 20, &root, &id, &op), VT_EPROTO,
                 "invalid JSON");
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("[1,2]", &root, &id, &op), VT_EPROTO, "JSON object");
    VT_CHECK(!id);
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("42", &root, &id, &op), VT_EPROTO, "JSON object");
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"op\":\"list\"}", &root, &id, &op), VT_EPROTO, "no id");
    VT_CHECK(!id);
    cJSON_Delete(root);
    static const char *const bad_ids[] = {"1.5", "true", "null", "{}", "[1]", "\"\"",
                                          "1e300"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        snprintf(text, sizeof text, "{\"id\":%s,\"op\":\"list\"}", bad_ids[i]);
        VT_CHECK_ERR(parse(text, &root, &id, &op), VT_EPROTO, "id must be");
        VT_CHECK(!id && !op);
        cJSON_Delete(root);
    }
    snprintf(text, sizeof text, "{\"id\":\"%065d\",\"op\":\"list\"}", 0);
    VT_CHECK_ERR(parse(text, &root, &id, &op), VT_EPROTO, "64");
    VT_CHECK(!id);
    cJSON_Delete(root);

    /* The id is recovered for the error reply when only the op is wrong. */
    VT_CHECK_ERR(parse("{\"id\":9}", &root, &id, &op), VT_EPROTO, "no op");
    VT_CHECK(cJSON_IsNumber(id) && id->valuedouble == 9 && !op);
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"id\":\"abc\",\"op\":3}", &root, &id, &op), VT_EPROTO,
                 "op must be");
    VT_CHECK(cJSON_IsString(id) && strcmp(id->valuestring, "abc") == 0);
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"id\":1,\"op\":\"\"}", &root, &id, &op), VT_EPROTO, "op must be");
    cJSON_Delete(root);

    /* Ids must be exact: from 2^53 on a double no longer tells neighbours
     * apart (2^53 + 1 = 9007199254740993 reads as 2^53). */
    static const char *const inexact[] = {"9007199254740993", "9007199254740992",
                                          "-9007199254740992", "1e16"};
    for (size_t i = 0; i < sizeof inexact / sizeof inexact[0]; i++) {
        snprintf(text, sizeof text, "{\"id\":%s,\"op\":\"list\"}", inexact[i]);
        VT_CHECK_ERR(parse(text, &root, &id, &op), VT_EPROTO, "id must be");
        cJSON_Delete(root);
    }
    VT_CHECK_OK(parse("{\"id\":9007199254740991,\"op\":\"list\"}", &root, &id, &op));
    VT_CHECK(id->valuedouble == 9007199254740991.0);
    cJSON_Delete(root);
    VT_CHECK_OK(parse("{\"id\":-9007199254740991,\"op\":\"list\"}", &root, &id, &op));
    cJSON_Delete(root);

    /* A NUL in a string would cut it short: refused, wherever it is; the id
     * is echoed when it is a number, never when it is a string (the NUL may
     * be in it). */
    VT_CHECK_ERR(parse("{\"id\":5,\"op\":\"submit\",\"name\":\"a\\u0000b\"}", &root, &id, &op),
                 VT_EINVAL, "NUL");
    VT_CHECK(cJSON_IsNumber(id) && id->valuedouble == 5);
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"id\":5,\"op\":\"x\",\"a\":{\"b\":[\"\\\\\\u0000\"]}}", &root, &id,
                       &op),
                 VT_EINVAL, "NUL"); /* "\\\u0000": an escaped backslash, then the NUL */
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"id\":\"r\\u0000x\",\"op\":\"list\"}", &root, &id, &op), VT_EINVAL,
                 "NUL");
    VT_CHECK(!id);
    cJSON_Delete(root);
    VT_CHECK_ERR(parse("{\"id\":5,\"op\":\"list\\u0000\"}", &root, &id, &op), VT_EINVAL, "NUL");
    cJSON_Delete(root);
    VT_CHECK_ERR(vt_proto_parse("{\"id\":5,\"op\":\"a\0b\"}", 19, &root, &id, &op), VT_EINVAL,
                 "NUL"); /* a raw zero byte */
    cJSON_Delete(root);
    /* An escaped backslash followed by "u0000" is text, not a NUL. */
    VT_CHECK_OK(parse("{\"id\":5,\"op\":\"list\",\"name\":\"a\\\\u0000\"}", &root, &id, &op));
    VT_CHECK_STR(cJSON_GetObjectItem(root, "name")->valuestring, "a\\u0000");
    cJSON_Delete(root);
    VT_CHECK_OK(parse("{\"id\":5,\"op\":\"list\",\"name\":\"\\u0001\"}", &root, &id, &op));
    cJSON_Delete(root);
}

/* ---- field readers ----------------------------------------------------- */

static void test_fields(vt_backend *be)
{
    cJSON *o = fake_json("{\"job\":42,\"frac\":1.5,\"name\":\"x\",\"all\":true,"
                         "\"n\":null,\"big\":1e300,\"s\":\"7\",\"p53\":9007199254740993,"
                         "\"below\":9007199254740991}");
    int64_t i = -1;
    const char *s = NULL;
    int b = -1;
    (void)be;

    VT_CHECK_OK(vt_proto_get_int(o, "job", 1, &i));
    VT_CHECK_INT(i, 42);
    i = -1;
    VT_CHECK_OK(vt_proto_get_int(o, "missing", 0, &i));
    VT_CHECK_INT(i, -1); /* untouched */
    VT_CHECK_OK(vt_proto_get_int(o, "n", 0, &i)); /* null: absent */
    VT_CHECK_INT(i, -1);
    VT_CHECK_ERR(vt_proto_get_int(o, "missing", 1, &i), VT_EINVAL, "missing is required");
    VT_CHECK_ERR(vt_proto_get_int(o, "n", 1, &i), VT_EINVAL, "n is required");
    VT_CHECK_ERR(vt_proto_get_int(o, "frac", 0, &i), VT_EINVAL, "frac must be an integer");
    VT_CHECK_ERR(vt_proto_get_int(o, "s", 0, &i), VT_EINVAL, "s must be an integer");
    VT_CHECK_ERR(vt_proto_get_int(o, "big", 0, &i), VT_EINVAL, "big must be an integer");
    VT_CHECK_ERR(vt_proto_get_int(o, "p53", 0, &i), VT_EINVAL, "p53 must be an integer");
    VT_CHECK_OK(vt_proto_get_int(o, "below", 0, &i));
    VT_CHECK(i == INT64_C(9007199254740991));
    i = -1;
    VT_CHECK_INT(i, -1);

    VT_CHECK_OK(vt_proto_get_str(o, "name", 1, &s));
    VT_CHECK_STR(s, "x");
    VT_CHECK_ERR(vt_proto_get_str(o, "job", 1, &s), VT_EINVAL, "job must be a string");
    VT_CHECK_ERR(vt_proto_get_str(o, "data", 1, &s), VT_EINVAL, "data is required");
    s = NULL;
    VT_CHECK_OK(vt_proto_get_str(o, "data", 0, &s));
    VT_CHECK(!s);

    VT_CHECK_OK(vt_proto_get_bool(o, "all", 1, &b));
    VT_CHECK_INT(b, 1);
    VT_CHECK_ERR(vt_proto_get_bool(o, "job", 0, &b), VT_EINVAL, "job must be true or false");
    VT_CHECK_ERR(vt_proto_get_bool(o, "x", 1, &b), VT_EINVAL, "x is required");
    b = 5;
    VT_CHECK_OK(vt_proto_get_bool(o, "x", 0, &b));
    VT_CHECK_INT(b, 5);
    VT_CHECK_ERR(vt_proto_get_int(NULL, "job", 1, &i), VT_EINVAL, "job is required");
    cJSON_Delete(o);
}

/* ---- builders ---------------------------------------------------------- */

/* Checks line is one line ending in "\n" and parses it. */
static cJSON *one_line(const char *line)
{
    size_t n = line ? strlen(line) : 0;
    if (!n || line[n - 1] != '\n' || memchr(line, '\n', n - 1))
        return NULL;
    return cJSON_ParseWithLength(line, n - 1);
}

static void test_builders(vt_backend *be)
{
    cJSON *nid = cJSON_CreateNumber(7), *sid = cJSON_CreateString("abc"), *m;
    char *line;
    (void)be;

    line = vt_proto_ok(nid, fake_json("{\"jobs\":[],\"id\":99,\"ok\":false,\"x\":\"a\\nb\"}"));
    m = one_line(line);
    VT_CHECK(m);
    VT_CHECK(strncmp(line, "{\"id\":7,\"ok\":true,", 18) == 0);
    free(line);
    VT_CHECK(cJSON_GetObjectItem(m, "id")->valuedouble == 7);
    VT_CHECK(cJSON_IsTrue(cJSON_GetObjectItem(m, "ok")));
    VT_CHECK(cJSON_IsArray(cJSON_GetObjectItem(m, "jobs")));
    VT_CHECK_STR(cJSON_GetObjectItem(m, "x")->valuestring, "a\nb");
    VT_CHECK_INT(cJSON_GetArraySize(m), 4); /* body's id/ok dropped */
    cJSON_Delete(m);

    line = vt_proto_ok(sid, NULL);
    m = one_line(line);
    VT_CHECK(m);
    VT_CHECK_STR(line, "{\"id\":\"abc\",\"ok\":true}\n");
    free(line);
    cJSON_Delete(m);

    /* The end of a watch is an ok reply with an event field. */
    line = vt_proto_ok(nid, fake_json("{\"event\":\"end\",\"job\":{\"id\":42}}"));
    VT_CHECK_STR(line, "{\"id\":7,\"ok\":true,\"event\":\"end\",\"job\":{\"id\":42}}\n");
    free(line);

    line = vt_proto_error(sid, VT_ENOTFOUND, "no job 42");
    VT_CHECK_STR(line, "{\"id\":\"abc\",\"ok\":false,\"error\":{\"code\":\"ENOTFOUND\","
                       "\"message\":\"no job 42\"}}\n");
    free(line);
    line = vt_proto_error(NULL, VT_EPROTO, NULL);
    VT_CHECK_STR(line, "{\"id\":null,\"ok\":false,\"error\":{\"code\":\"EPROTO\","
                       "\"message\":\"protocol error\"}}\n");
    free(line);
    /* Every code's name goes on the wire and comes back. */
    for (int code = VT_EINVAL; code >= VT_ESTATE; code--) {
        const cJSON *e;
        line = vt_proto_error(nid, code, "m");
        m = one_line(line);
        free(line);
        VT_CHECK(m);
        e = cJSON_GetObjectItem(m, "error");
        VT_CHECK_INT(vt_error_from_name(cJSON_GetObjectItem(e, "code")->valuestring), code);
        cJSON_Delete(m);
    }

    line = vt_proto_event(nid, "progress",
                          fake_json("{\"progress\":{\"step\":3},\"event\":\"x\",\"id\":1}"));
    VT_CHECK_STR(line, "{\"id\":7,\"event\":\"progress\",\"progress\":{\"step\":3}}\n");
    free(line);
    line = vt_proto_event(sid, "log", NULL);
    VT_CHECK_STR(line, "{\"id\":\"abc\",\"event\":\"log\"}\n");
    free(line);
    cJSON_Delete(nid);
    cJSON_Delete(sid);
}

/* ---- client ------------------------------------------------------------ */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static const char *op_of(const cJSON *req)
{
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(req, "op");
    return cJSON_IsString(op) ? op->valuestring : "";
}

/* Answers hello, then: "job" with an unrelated event, a state event of the
 * same id and the reply; "cancel" with ENOTFOUND; anything else with an
 * error of null id. */
static void script_interleave(fake_daemon *d, int fd)
{
    const cJSON *req;
    if (fake_hello(d, fd) < 0)
        return;
    while ((req = fake_recv(d, fd))) {
        if (strcmp(op_of(req), "job") == 0) {
            fake_send_raw(fd, "{\"id\":99,\"event\":\"progress\",\"progress\":{\"step\":1}}\n");
            fake_event(fd, req, "state", fake_json("{\"job\":{\"id\":42}}"));
            fake_ok(fd, req, fake_json("{\"job\":{\"id\":42,\"state\":\"running\"}}"));
        } else if (strcmp(op_of(req), "cancel") == 0) {
            fake_error(fd, req, VT_ENOTFOUND, "no job 42");
        } else {
            fake_send(fd, vt_proto_error(NULL, VT_EPROTO, "invalid JSON (near byte 3)"));
        }
    }
}

static void test_big_ids(vt_backend *be)
{
    static const double ids[] = {9007199254740991.0, -9007199254740991.0, 1e15 + 1, 7};
    static const char *const want[] = {"{\"id\":9007199254740991,", "{\"id\":-9007199254740991,",
                                       "{\"id\":1000000000000001,", "{\"id\":7,"};
    (void)be;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        cJSON *id = cJSON_CreateNumber(ids[i]);
        char *line = vt_proto_ok(id, NULL);
        VT_CHECK(line && strncmp(line, want[i], strlen(want[i])) == 0);
        free(line);
        cJSON_Delete(id);
    }
}

static void test_utf8_scrub(vt_backend *be)
{
    static const struct { const char *in, *out; } cases[] = {
        {"plain ascii", "plain ascii"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"bad \xff byte", "bad ? byte"},
        {"cut \xc3", "cut ?"},
        {"overlong \xc0\xaf", "overlong ??"},
        {"overlong3 \xe0\x80\xaf", "overlong3 ???"},
        {"surrogate \xed\xa0\x80", "surrogate ???"},
        {"too big \xf4\x90\x80\x80", "too big ????"},
        {"lone \x80 continuation", "lone ? continuation"},
    };
    (void)be;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        vt_utf8_scrub(buf);
        VT_CHECK_STR(buf, cases[i].out);
    }
    /* An error echoing raw bytes goes out as valid UTF-8 JSON. */
    char *line = vt_proto_error(NULL, VT_EINVAL, "unknown op '\xff\xfe'");
    cJSON *m = one_line(line);
    VT_CHECK(m);
    VT_CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "error"), "message")->valuestring,
                 "unknown op '?" "?'"); /* split: "??'" would be a trigraph */
    cJSON_Delete(m);
    free(line);
}

static void test_client_requests(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    cJSON *hello = NULL, *reply = NULL, *msg = NULL, *req;
    const cJSON *r;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("interleave"), script_interleave, NULL, 1) == 0);
    VT_CHECK_OK(vt_client_connect(&c, d->path, &hello));
    VT_CHECK_STR(cJSON_GetObjectItem(hello, "server")->valuestring, "vggtuned 0.1.0");
    cJSON_Delete(hello);
    VT_CHECK(vt_client_fd(c) >= 0);

    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "job");
    cJSON_AddNumberToObject(req, "job", 42);
    cJSON_AddNumberToObject(req, "id", 555); /* replaced by the client's own */
    VT_CHECK_OK(vt_client_request(c, req, &reply));
    VT_CHECK(cJSON_GetObjectItem(reply, "id")->valuedouble == 2);
    r = cJSON_GetObjectItem(reply, "job");
    VT_CHECK_STR(cJSON_GetObjectItem(r, "state")->valuestring, "running");
    cJSON_Delete(reply);
    reply = NULL;
    /* The events that came first were kept, in order. */
    VT_CHECK_INT(vt_client_read(c, 0, &msg), 1);
    VT_CHECK(cJSON_GetObjectItem(msg, "id")->valuedouble == 99);
    cJSON_Delete(msg);
    VT_CHECK_INT(vt_client_read(c, 0, &msg), 1);
    VT_CHECK_STR(cJSON_GetObjectItem(msg, "event")->valuestring, "state");
    VT_CHECK(cJSON_GetObjectItem(msg, "id")->valuedouble == 2);
    cJSON_Delete(msg);
    VT_CHECK_INT(vt_client_read(c, 0, &msg), 0);

    /* An error reply: its code, the daemon's message, the reply itself. */
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "cancel");
    cJSON_AddNumberToObject(req, "job", 42);
    VT_CHECK_ERR(vt_client_request(c, req, &reply), VT_ENOTFOUND, "no job 42");
    VT_CHECK(cJSON_IsFalse(cJSON_GetObjectItem(reply, "ok")));
    VT_CHECK(cJSON_GetObjectItem(reply, "id")->valuedouble == 3);
    cJSON_Delete(reply);
    reply = NULL;

    /* An error with a null id answers the request that is waiting. */
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "bogus");
    VT_CHECK_ERR(vt_client_request(c, req, NULL), VT_EPROTO, "invalid JSON");

    vt_client_close(c);
    /* What the daemon saw: hello, then the requests with ids 2, 3, 4. */
    fake_join(d);
    VT_CHECK_INT(cJSON_GetArraySize(d->log), 4);
    for (int i = 0; i < 4; i++) {
        const cJSON *q = cJSON_GetArrayItem(d->log, i);
        VT_CHECK(cJSON_GetObjectItem(q, "id")->valuedouble == i + 1);
        VT_CHECK(q->child && strcmp(q->child->string, "id") == 0); /* id first */
    }
    VT_CHECK_STR(op_of(cJSON_GetArrayItem(d->log, 0)), "hello");
    VT_CHECK_STR(op_of(cJSON_GetArrayItem(d->log, 3)), "bogus");
    fake_stop(d);
}

static void script_check_hello(fake_daemon *d, int fd)
{
    const cJSON *req = fake_recv(d, fd), *v = cJSON_GetObjectItem(req, "version");
    const cJSON *cl = cJSON_GetObjectItem(req, "client"), *id = cJSON_GetObjectItem(req, "id");
    int *ok = d->ud;
    *ok = strcmp(op_of(req), "hello") == 0 && cJSON_IsNumber(v) && v->valuedouble == 1 &&
          cJSON_IsString(cl) && strncmp(cl->valuestring, "vggtune ", 8) == 0 &&
          cJSON_IsNumber(id) && id->valuedouble == 1;
    fake_ok(fd, req, fake_json("{\"version\":1,\"server\":\"vggtuned 0.1.0\","
                               "\"max_frame\":4096}"));
    while (fake_recv(d, fd))
        ;
}

static void test_client_handshake(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    cJSON *req;
    char *big;
    int ok = 0;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("hello"), script_check_hello, &ok, 1) == 0);
    VT_CHECK_OK(vt_client_connect(&c, d->path, NULL));
    /* The daemon's max_frame (4096 here) bounds our requests. */
    big = malloc(5000);
    memset(big, 'x', 4999);
    big[4999] = '\0';
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "predict");
    cJSON_AddStringToObject(req, "pad", big);
    free(big);
    VT_CHECK_ERR(vt_client_request(c, req, NULL), VT_ETOOBIG, "4096");
    vt_client_close(c);
    fake_stop(d);
    VT_CHECK(ok);
}

static void script_version2(fake_daemon *d, int fd)
{
    const cJSON *req = fake_recv(d, fd);
    fake_ok(fd, req, fake_json("{\"version\":2,\"server\":\"vggtuned 9\"}"));
}

static void script_refuse(fake_daemon *d, int fd)
{
    fake_error(fd, fake_recv(d, fd), VT_EPROTO, "unsupported protocol version 1");
}

/* Reads the hello first: closing a Unix socket with unread data makes the
 * peer's next read fail with ECONNRESET, before it sees what we sent. */
static void script_garbage(fake_daemon *d, int fd)
{
    fake_recv(d, fd);
    fake_send_raw(fd, "HTTP/1.1 400 Bad Request\r\n\r\n");
}

static void script_close_at_once(fake_daemon *d, int fd)
{
    (void)d;
    (void)fd;
}

static void test_client_handshake_fails(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("v2"), script_version2, NULL, 1) == 0);
    VT_CHECK_ERR(vt_client_connect(&c, d->path, NULL), VT_EPROTO, "protocol version 2");
    VT_CHECK(!c);
    fake_stop(d);

    VT_CHECK(fake_start(&d, vt_test_tmpdir("refuse"), script_refuse, NULL, 1) == 0);
    VT_CHECK_ERR(vt_client_connect(&c, d->path, NULL), VT_EPROTO,
                 "refused the handshake: unsupported protocol version 1");
    fake_stop(d);

    VT_CHECK(fake_start(&d, vt_test_tmpdir("garbage"), script_garbage, NULL, 1) == 0);
    VT_CHECK_ERR(vt_client_connect(&c, d->path, NULL), VT_EPROTO, "malformed");
    fake_stop(d);

    VT_CHECK(fake_start(&d, vt_test_tmpdir("close"), script_close_at_once, NULL, 1) == 0);
    VT_CHECK_ERR(vt_client_connect(&c, d->path, NULL), VT_EIO, "closed the connection");
    fake_stop(d);
}

static void test_client_not_running(vt_backend *be)
{
    const char *dir = vt_test_tmpdir("missing");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    vt_client *c = NULL;
    char path[sizeof sa.sun_path], msg[512];
    int fd;
    (void)be;

    VT_CHECK(strlen(dir) + 14 < sizeof path);
    snprintf(path, sizeof path, "%s/vggtune.sock", dir);
    snprintf(msg, sizeof msg, "vggtuned is not running: no socket at %s (start it with "
             "'vggtuned', or the service with 'systemctl start vggtuned.socket')", path);
    VT_CHECK_ERR(vt_client_connect(&c, path, NULL), VT_ENOTFOUND, msg);
    VT_CHECK(!c);

    /* A socket file nobody listens on (a daemon that died). */
    memcpy(sa.sun_path, path, sizeof path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    VT_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    VT_CHECK_ERR(vt_client_connect(&c, path, NULL), VT_ENOTFOUND, "nothing listens on");

    /* No permission: the message says so and what to ask an administrator
     * for (which hint: vt_proto_denied_msg, test_client.c).  Root gets in
     * anyway, so as root the connect is made by a child that has become
     * nobody. */
    fake_daemon *d = NULL;
    VT_CHECK(fake_start(&d, vt_test_tmpdir("perm"), script_close_at_once, NULL, 1) == 0);
    chmod(d->path, 0);
    if (geteuid() != 0) {
        VT_CHECK_ERR(vt_client_connect(&c, d->path, NULL), VT_EPERM, "administrator");
        snprintf(msg, sizeof msg, "permission denied on %s: ", d->path);
        VT_CHECK_CONTAINS(vt_error_msg(), msg);
    } else {
        pid_t pid = fork();
        int st = 0;
        if (pid == 0) {
            int rc;
            if (setgid(65534) < 0 || setuid(65534) < 0)
                _exit(3);
            rc = vt_client_connect(&c, d->path, NULL);
            snprintf(msg, sizeof msg, "permission denied on %s: ", d->path);
            _exit(rc == VT_EPERM && strstr(vt_error_msg(), msg) &&
                  strstr(vt_error_msg(), "administrator") ? 0 : 1);
        }
        VT_CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        VT_CHECK(WIFEXITED(st));
        VT_CHECK_INT(WEXITSTATUS(st), 0);
    }
    fake_stop(d);

    char longpath[300];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    VT_CHECK_ERR(vt_client_connect(&c, longpath, NULL), VT_EINVAL, "too long");
}

/* Hello, then silence until the client goes. */
static void script_silent(fake_daemon *d, int fd)
{
    if (fake_hello(d, fd) == 0)
        while (fake_recv(d, fd))
            ;
}

static void test_client_timeout(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    cJSON *msg = NULL;
    double t0, dt;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("silent"), script_silent, NULL, 1) == 0);
    VT_CHECK_OK(vt_client_connect(&c, d->path, NULL));
    t0 = now_ms();
    VT_CHECK_INT(vt_client_read(c, 150, &msg), 0);
    dt = now_ms() - t0;
    VT_CHECK(!msg);
    VT_CHECK(dt >= 140 && dt < 5000);
    VT_CHECK_INT(vt_client_read(c, 0, &msg), 0);
    vt_client_close(c);
    fake_stop(d);
}

/* Hello, one event, then the daemon goes away. */
static void script_hello_then_close(fake_daemon *d, int fd)
{
    if (fake_hello(d, fd) == 0)
        fake_send_raw(fd, "{\"id\":2,\"event\":\"log\",\"message\":\"bye\"}\n{\"id\":2,\"ev");
}

static void test_client_daemon_closes(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    cJSON *msg = NULL, *req, *reply = (cJSON *)1;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("closes"), script_hello_then_close, NULL, 1) == 0);
    VT_CHECK_OK(vt_client_connect(&c, d->path, NULL));
    /* What came before the close is still delivered, then VT_EIO. */
    VT_CHECK_INT(vt_client_read(c, 5000, &msg), 1);
    VT_CHECK_STR(cJSON_GetObjectItem(msg, "message")->valuestring, "bye");
    cJSON_Delete(msg);
    VT_CHECK_ERR(vt_client_read(c, 5000, &msg), VT_EIO, "closed the connection");
    VT_CHECK_ERR(vt_client_read(c, -1, &msg), VT_EIO, NULL);
    /* Sending to a closed connection: VT_EIO, no SIGPIPE, no reply. */
    req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "op", "list");
    VT_CHECK_ERR(vt_client_request(c, req, &reply), VT_EIO, NULL);
    VT_CHECK(reply == NULL);
    vt_client_close(c);
    vt_client_close(NULL);
    fake_stop(d);
}

/* The daemon reads nothing after hello and then closes: a write to the
 * closed peer must be VT_EIO, not a SIGPIPE that kills the client. */
static void script_hello_then_hangup(fake_daemon *d, int fd)
{
    if (fake_hello(d, fd) == 0)
        shutdown(fd, SHUT_RDWR);
}

static void test_client_no_sigpipe(vt_backend *be)
{
    fake_daemon *d = NULL;
    vt_client *c = NULL;
    cJSON *msg = NULL;
    (void)be;

    VT_CHECK(fake_start(&d, vt_test_tmpdir("hangup"), script_hello_then_hangup, NULL, 1) == 0);
    VT_CHECK_OK(vt_client_connect(&c, d->path, NULL));
    fake_join(d); /* the daemon's end is closed, and the client has not read that yet */
    for (int i = 0; i < 3; i++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "op", "list");
        VT_CHECK_ERR(vt_client_send(c, req, NULL), VT_EIO, NULL);
    }
    VT_CHECK_ERR(vt_client_read(c, 5000, &msg), VT_EIO, NULL);
    for (int i = 0; i < 3; i++) {
        cJSON *req = cJSON_CreateObject();
        cJSON_AddStringToObject(req, "op", "list");
        VT_CHECK_ERR(vt_client_send(c, req, NULL), VT_EIO, NULL);
    }
    vt_client_close(c);
    fake_stop(d);
}

static void test_default_socket(vt_backend *be)
{
    const char *dir = vt_test_tmpdir("xdg");
    char buf[512], want[512];
    FILE *f;
    (void)be;

    setenv("VGGTUNE_SOCKET", "/tmp/custom.sock", 1);
    VT_CHECK_STR(vt_proto_default_socket(buf, sizeof buf), "/tmp/custom.sock");
    unsetenv("VGGTUNE_SOCKET");
    setenv("XDG_RUNTIME_DIR", dir, 1);
    VT_CHECK_STR(vt_proto_default_socket(buf, sizeof buf), "/run/vggtune/vggtune.sock");
    snprintf(want, sizeof want, "%s/vggtune.sock", dir);
    f = fopen(want, "w");
    VT_CHECK(f);
    fclose(f);
    VT_CHECK_STR(vt_proto_default_socket(buf, sizeof buf), want);
    unsetenv("XDG_RUNTIME_DIR");

    /* Without $XDG_RUNTIME_DIR: /tmp/vggtune-UID.sock when it is a socket of
     * ours, never a plain file there (anyone can create files in /tmp). */
    snprintf(want, sizeof want, "/tmp/vggtune-%u.sock", (unsigned)geteuid());
    if (access(want, F_OK) == 0)
        return; /* a real daemon of this user: leave it alone */
    f = fopen(want, "w");
    VT_CHECK(f);
    fclose(f);
    VT_CHECK_STR(vt_proto_default_socket(buf, sizeof buf), "/run/vggtune/vggtune.sock");
    unlink(want);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memcpy(sa.sun_path, want, strlen(want) + 1); /* short: /tmp/vggtune-UID.sock */
    VT_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    VT_CHECK_STR(vt_proto_default_socket(buf, sizeof buf), want);
    close(fd);
    unlink(want);
}

int main(int argc, char **argv)
{
    static const vt_test_case cases[] = {
        {"framer_split", test_framer_split, 0},
        {"framer_bytewise", test_framer_bytewise, 0},
        {"framer_empty_lines", test_framer_empty_lines, 0},
        {"framer_limit", test_framer_limit, 0},
        {"framer_max_frame", test_framer_max_frame, 0},
        {"parse_good", test_parse_good, 0},
        {"parse_bad", test_parse_bad, 0},
        {"fields", test_fields, 0},
        {"builders", test_builders, 0},
        {"utf8_scrub", test_utf8_scrub, 0},
        {"big_ids", test_big_ids, 0},
        {"client_requests", test_client_requests, 0},
        {"client_handshake", test_client_handshake, 0},
        {"client_handshake_fails", test_client_handshake_fails, 0},
        {"client_not_running", test_client_not_running, 0},
        {"client_timeout", test_client_timeout, 0},
        {"client_daemon_closes", test_client_daemon_closes, 0},
        {"client_no_sigpipe", test_client_no_sigpipe, 0},
        {"default_socket", test_default_socket, 0},
    };
    VT_TEST_MAIN(cases);
}

/* fuzz_proto.c - contract: any bytes a client sends, cut into any chunks,
 * go through the daemon's framer, request parser, field readers and reply
 * builders without a crash, a leak or undefined behaviour, and every reply
 * is one line of valid UTF-8 JSON. */
#include <stdlib.h>
#include <string.h>

#include "../../common/error.h"
#include "../../common/utf8.h"
#include "../../proto/proto.h"

static void vt__check_reply(char *reply)
{
    size_t n;
    cJSON *back;
    if (!reply)
        return; /* out of memory */
    n = strlen(reply);
    if (n == 0 || reply[n - 1] != '\n' || memchr(reply, '\n', n - 1) ||
        !vt_utf8_valid((const uint8_t *)reply, n) ||
        !(back = cJSON_ParseWithLength(reply, n)))
        abort();
    cJSON_Delete(back);
    free(reply);
}

static void vt__one_request(const char *line, size_t len)
{
    cJSON *root = NULL;
    const cJSON *id = NULL;
    const char *op = NULL, *s;
    int64_t i;
    int b, rc = vt_proto_parse(line, len, &root, &id, &op);

    if (rc == 0) {
        vt_proto_get_int(root, "job", 0, &i);
        vt_proto_get_str(root, "path", 1, &s);
        vt_proto_get_bool(root, "follow", 0, &b);
        vt__check_reply(vt_proto_ok(id, cJSON_Duplicate(root, 1)));
        vt__check_reply(vt_proto_event(id, op, cJSON_Duplicate(root, 1)));
    }
    vt__check_reply(vt_proto_error(id, rc < 0 ? rc : VT_EINVAL, vt_error_msg()));
    cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_framer f;
    size_t off = 1, step = size ? (size_t)data[0] % 97 + 1 : 1;
    char *line;
    size_t len;
    int rc = 0;

    vt_framer_init(&f, 2048); /* small, so that ETOOBIG is reached */
    while (rc == 0 && off < size) {
        size_t n = size - off < step ? size - off : step;
        rc = vt_framer_feed(&f, (const char *)data + off, n);
        off += n;
        while (vt_framer_next(&f, &line, &len) == 1) {
            if (len >= 2048 || line[len] != '\0')
                abort();
            vt__one_request(line, len);
            free(line);
        }
    }
    vt_framer_free(&f);
    return 0;
}

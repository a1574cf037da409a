/* fuzz_render.c - contract: whatever JSON comes back from the daemon (a
 * newer or older one, or a job of any shape), the client's renderers and
 * its watch-stream follower print something, without a crash, a leak or
 * undefined behaviour.  Input: one selector byte, then the JSON message. */
#include <stdio.h>
#include <stdlib.h>

#include "../../client/cli.h"
#include "../../proto/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *null;
    char buf[512];
    char *shown[] = {"a.jpg", "b.png"};
    vt_cli_watcher w;
    cJSON *msg;

    if (size < 1 || !(msg = cJSON_ParseWithLength((const char *)data + 1, size - 1)))
        return 0;
    if (!null && !(null = fopen("/dev/null", "w")))
        abort();
    switch (data[0] % 9) {
    case 0: vt_cli_render_list(null, msg); break;
    case 1: vt_cli_render_job(null, msg); break;
    case 2: vt_cli_render_status(null, msg); break;
    case 3: vt_report_progress(buf, sizeof buf, msg, data[0] / 9 + 1); break;
    case 4: vt_report_epoch(buf, sizeof buf, msg, data[0] / 9); break;
    case 5: vt_cli_render_predictions(null, msg, shown, data[0] / 9 % 3); break;
    case 6: vt_report_eval(null, msg); break;
    case 7: vt_cli_fmt_time(msg, buf, sizeof buf); break;
    default:
        vt_cli_watcher_init(&w, null, null, data[0] & 0x80, 80, 42);
        if (vt_cli_watcher_feed(&w, msg) == 1)
            (void)vt_cli_watcher_finish(&w);
        vt_cli_watcher_free(&w);
    }
    cJSON_Delete(msg);
    return 0;
}

/* main.c - vggtuned: the training daemon and its one-shot commands.
 *
 *   vggtuned [options]                 serve jobs on a Unix socket (server.c)
 *   vggtuned run JOB.json              one job in the foreground (foreground.c)
 *   vggtuned predict MODEL IMAGE...    classify images with a model file
 *   vggtuned eval MODEL DIR            evaluate a model on a labelled folder
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/creds.h"
#include "../common/error.h"
#include "../common/log.h"
#include "../kernels/backend.h"
#include "foreground.h"
#include "server.h"

static void vt__usage(FILE *f)
{
    fprintf(f,
            "usage: vggtuned [options]            serve jobs (see --help)\n"
            "       vggtuned run JOB.json         train one job in the foreground\n"
            "       vggtuned predict MODEL IMAGE... classify images with a model file\n"
            "       vggtuned eval MODEL DIR       evaluate a model on a labelled folder\n"
            "       vggtuned --version\n"
            "Each command takes --help.\n");
}

int main(int argc, char **argv)
{
    const char *level = getenv("VGGTUNE_LOG");
    int lv = level ? vt_log_level_parse(level) : -1;

    vt_log_init("vggtuned", lv >= 0 ? (vt_log_level)lv : VT_LOG_INFO);
    if (vt_creds_init() < 0) {
        fprintf(stderr, "vggtuned: %s\n", vt_error_msg());
        return 1;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("vggtuned %s (backends: %s)\n", VT_VERSION, vt_backend_compiled());
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return vt_fg_run(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "predict") == 0)
        return vt_fg_predict(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "eval") == 0)
        return vt_fg_eval(argc - 1, argv + 1);
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "vggtuned: unknown command '%s'\n", argv[1]);
        vt__usage(stderr);
        return 2;
    }
    return vt_server_main(argc, argv);
}

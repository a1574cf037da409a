/* server.c - temporary: the daemon is being written; only the foreground
 * commands work in this build. */
#include "server.h"

#include <stdio.h>

int vt_server_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "vggtuned: the daemon is not built yet; use 'vggtuned run JOB.json'\n");
    return 2;
}

/* fuzz_config.c - contract: any daemon config file (--config FILE) is
 * applied or refused with a message naming the line, without a crash, a
 * leak or undefined behaviour. */
#include <getopt.h>
#include <unistd.h>

#include "../../daemon/config.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static vt_config c; /* (three PATH_MAX paths: kept off the stack) */
    char path[64];
    int fd = vt_fuzz_file(data, size, path, sizeof path);
    char *argv[] = {"vggtuned", "--config", path, NULL};

    optind = 0; /* getopt starts afresh, as in a new process */
    (void)vt_config_load(&c, 3, argv);
    close(fd);
    return 0;
}

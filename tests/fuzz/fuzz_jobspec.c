/* fuzz_jobspec.c - contract: any job document is accepted or refused with
 * a message, without a crash, a leak or undefined behaviour; one accepted
 * is printed (vt_jobspec_to_json) as a document that is accepted again and
 * prints the same; absolutizing and checking its paths is safe too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/error.h"
#include "../../engine/jobspec.h"

/* Prints s, parses the text again and checks that it prints the same. */
static void vt__round_trip(const vt_jobspec *s)
{
    vt_jobspec again;
    char *a = vt_jobspec_to_json(s), *b;
    if (!a)
        return; /* out of memory */
    if (vt_jobspec_parse(&again, a, strlen(a)) < 0) {
        fprintf(stderr, "printed document refused: %s\n%s\n", vt_error_msg(), a);
        abort();
    }
    b = vt_jobspec_to_json(&again);
    if (b && strcmp(a, b) != 0) {
        fprintf(stderr, "printed twice differently:\n%s\n%s\n", a, b);
        abort();
    }
    free(a);
    free(b);
    vt_jobspec_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vt_jobspec s, c;
    char buf[256];

    if (vt_jobspec_parse(&s, (const char *)data, size) < 0)
        return 0;
    vt__round_trip(&s);
    vt_jobspec_layout(s.hidden, s.nhidden, buf, sizeof buf);
    for (int e = 0; e < s.epochs && e < 1000; e += 97)
        (void)vt_jobspec_lr(&s, (uint64_t)e * 1000, e);
    if (vt_jobspec_copy(&c, &s) == 0) {
        if (vt_jobspec_absolutize(&c, "/home/someone/work") == 0) {
            free(vt_jobspec_to_json(&c));
            (void)vt_jobspec_check_output(&c);
        }
        vt_jobspec_free(&c);
    }
    vt_jobspec_free(&s);
    return 0;
}

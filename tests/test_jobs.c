/* test_jobs.c - the daemon's job table: who owns an output directory. */
#include <stdlib.h>

#include "../daemon/jobs.h"
#include "vt_test.h"

static vt_job *add(vt_jobs *js, int64_t id, const char *out, vt_job_state st, double started)
{
    vt_jobspec s;
    vt_jobspec_defaults(&s);
    s.output = (char *)out;
    vt_job *j = vt_job_new(id, 1000, 1000, "alice", &s);
    if (j) {
        j->state = st;
        j->started = started;
        vt_jobs_add(js, j);
    }
    return j;
}

/* A later job replaces a job's outputs once it has started in the same
 * directory (the same path up to trailing slashes), not while it waits or
 * when it was cancelled before it started. */
static void test_replaced_by(vt_backend *be)
{
    vt_jobs js = {0};
    (void)be;
    vt_job *a = add(&js, 1, "/home/alice/out", VT_JOB_SUCCEEDED, 100);
    vt_job *other = add(&js, 2, "/home/alice/other", VT_JOB_SUCCEEDED, 200);
    vt_job *waiting = add(&js, 3, "/home/alice/out/", VT_JOB_QUEUED, 0);
    VT_CHECK(a && other && waiting);
    VT_CHECK(vt_jobs_replaced_by(&js, a) == NULL);
    waiting->state = VT_JOB_CANCELLED; /* cancelled while queued */
    VT_CHECK(vt_jobs_replaced_by(&js, a) == NULL);
    vt_job *b = add(&js, 4, "/home/alice/out", VT_JOB_RUNNING, 300);
    VT_CHECK(vt_jobs_replaced_by(&js, a) == b);
    VT_CHECK(vt_jobs_replaced_by(&js, b) == NULL);
    VT_CHECK(vt_jobs_replaced_by(&js, other) == NULL);
    /* the output's owner for a new submission: the newest job there */
    VT_CHECK(vt_jobs_output_owner(&js, "/home/alice/out", NULL) == b);
    vt_jobs_clear(&js);
}

static const vt_test_case cases[] = {
    {"replaced_by", test_replaced_by, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

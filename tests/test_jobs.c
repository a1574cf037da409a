/* test_jobs.c - the daemon's job table: which job writes to a directory. */
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

/* The job of a given state writing to a directory: the newest, whatever
 * trailing slashes its path has, none for other directories or states (the
 * daemon refuses a job a directory where a queued or running job writes). */
static void test_output_job(vt_backend *be)
{
    vt_jobs js = {0};
    (void)be;
    vt_job *a = add(&js, 1, "/home/alice/out", VT_JOB_SUCCEEDED, 100);
    vt_job *other = add(&js, 2, "/home/alice/other", VT_JOB_RUNNING, 200);
    vt_job *gone = add(&js, 3, "/home/alice/out/", VT_JOB_CANCELLED, 0);
    VT_CHECK(a && other && gone);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/out", VT_JOB_SUCCEEDED) == a);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/out//", VT_JOB_SUCCEEDED) == a);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/out", VT_JOB_CANCELLED) == gone);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/out", VT_JOB_RUNNING) == NULL);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/other", VT_JOB_RUNNING) == other);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/o", VT_JOB_RUNNING) == NULL);
    vt_job *b = add(&js, 4, "/home/alice/out", VT_JOB_SUCCEEDED, 300);
    VT_CHECK(vt_jobs_output_job(&js, "/home/alice/out", VT_JOB_SUCCEEDED) == b);
    vt_jobs_clear(&js);
}

static const vt_test_case cases[] = {
    {"output_job", test_output_job, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

/* test_sched.c - fair share and admission, simulated exactly (no threads). */
#include "../daemon/sched.h"
#include "vt_test.h"

/* Runs `steps` picks where each step of user u costs cost[u] seconds; returns
 * each user's device seconds in used[]. */
static void simulate(vt_sched *s, int steps, const double *cost, double *used)
{
    double now = 0;
    for (int i = 0; i < steps; i++) {
        vt_sched_job *j = vt_sched_pick(s, NULL);
        if (!j)
            return;
        int u = (int)(intptr_t)vt_sched_job_ud(j);
        used[u] += cost[u];
        now += cost[u];
        vt_sched_charge(s, j, cost[u], now);
    }
}

static void test_equal_share_per_user(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    double used[2] = {0, 0}, cost[2] = {0.1, 0.1};
    (void)be;
    VT_CHECK(s);
    /* User 1000 has one job, user 1001 has three. */
    VT_CHECK(vt_sched_add(s, 1, 1000, 10, (void *)0));
    for (int k = 0; k < 3; k++)
        VT_CHECK(vt_sched_add(s, 2 + k, 1001, 10, (void *)1));
    while (vt_sched_admit(s, 1000))
        ;
    simulate(s, 1000, cost, used);
    VT_CHECK_NEAR(used[0] / (used[0] + used[1]), 0.5, 0.01);
    /* Steps of different cost: shares are of time, not of steps. */
    double used2[2] = {0, 0}, cost2[2] = {0.3, 0.1};
    simulate(s, 3000, cost2, used2);
    VT_CHECK_NEAR(used2[0] / (used2[0] + used2[1]), 0.5, 0.02);
    vt_sched_user u[4];
    int n = vt_sched_users(s, u, 4, 1e9);
    VT_CHECK_INT(n, 2);
    vt_sched_free(s);
}

/* Shares are of the listed users' recent time: once one user's jobs have
 * ended, the other's share is all of it, and two users' shares add up to 1. */
static void test_share_of_listed_users(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    vt_sched_job *a, *b;
    vt_sched_user u[4];
    int n;
    (void)be;
    VT_CHECK((a = vt_sched_add(s, 1, 1000, 10, NULL)) && (b = vt_sched_add(s, 2, 1001, 10, NULL)));
    while (vt_sched_admit(s, 1000))
        ;
    vt_sched_charge(s, a, 3.0, 100.0);
    vt_sched_charge(s, b, 1.0, 100.0);
    n = vt_sched_users(s, u, 4, 100.0);
    VT_CHECK_INT(n, 2);
    VT_CHECK_NEAR(u[0].share + u[1].share, 1.0, 1e-9);
    VT_CHECK_NEAR(u[0].uid == 1000 ? u[0].share : u[1].share, 0.75, 1e-9);
    vt_sched_remove(s, a);
    n = vt_sched_users(s, u, 4, 100.0);
    VT_CHECK_INT(n, 1);
    VT_CHECK_INT((int)u[0].uid, 1001);
    VT_CHECK_NEAR(u[0].share, 1.0, 1e-9);
    vt_sched_free(s);
}

static void test_round_robin_within_user(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    int count[3] = {0, 0, 0};
    (void)be;
    for (int k = 0; k < 3; k++)
        VT_CHECK(vt_sched_add(s, k, 1000, 1, (void *)(intptr_t)k));
    while (vt_sched_admit(s, 100))
        ;
    for (int i = 0; i < 300; i++) {
        vt_sched_job *j = vt_sched_pick(s, NULL);
        count[(intptr_t)vt_sched_job_ud(j)]++;
        vt_sched_charge(s, j, 1, i);
    }
    for (int k = 0; k < 3; k++)
        VT_CHECK_INT(count[k], 100);
    vt_sched_free(s);
}

static void test_admission(vt_backend *be)
{
    vt_sched *s = vt_sched_new(2);
    int running, waiting;
    (void)be;
    vt_sched_job *a = vt_sched_add(s, 1, 1000, 40, NULL);
    vt_sched_job *b = vt_sched_add(s, 2, 1000, 40, NULL);
    vt_sched_job *c = vt_sched_add(s, 3, 1000, 40, NULL); /* over the per-user limit */
    vt_sched_job *d = vt_sched_add(s, 4, 1001, 70, NULL); /* does not fit yet */
    vt_sched_job *e = vt_sched_add(s, 5, 1002, 1, NULL);  /* fits, but may not overtake */
    VT_CHECK(a && b && c && d && e);
    VT_CHECK(vt_sched_admit(s, 100) == a);
    VT_CHECK(vt_sched_admit(s, 60) == b);
    /* c is skipped (its user runs 2 already); d does not fit in 20 and e must
     * not overtake it. */
    VT_CHECK(vt_sched_admit(s, 20) == NULL);
    vt_sched_counts(s, &running, &waiting);
    VT_CHECK_INT(running, 2);
    VT_CHECK_INT(waiting, 3);
    vt_sched_remove(s, a);
    VT_CHECK(vt_sched_admit(s, 100) == c);
    VT_CHECK(vt_sched_admit(s, 100) == d);
    VT_CHECK(vt_sched_admit(s, 100) == e);
    VT_CHECK(vt_sched_find(s, 4) == d);
    VT_CHECK(vt_sched_find(s, 99) == NULL);
    vt_sched_free(s);
}

/* A user who was idle does not get a burst to "catch up": user 1000 has
 * the device alone for 100 s, then user 1001 comes with a job (or with
 * request set, a request), and of the next 20 one-second picks about half
 * are 1001's. */
static void check_no_banking(int request)
{
    vt_sched *s = vt_sched_new(8);
    double now = 0;
    int late = 0;
    VT_CHECK(vt_sched_add(s, 1, 1000, 1, (void *)0));
    vt_sched_admit(s, 10);
    for (int i = 0; i < 100; i++) {
        vt_sched_job *j = vt_sched_pick(s, NULL);
        now += 1;
        vt_sched_charge(s, j, 1, now);
    }
    if (request) {
        VT_CHECK(vt_sched_add_request(s, 1001, (void *)1));
    } else {
        VT_CHECK(vt_sched_add(s, 2, 1001, 1, (void *)1));
        vt_sched_admit(s, 10);
    }
    for (int i = 0; i < 20; i++) {
        vt_sched_job *j = vt_sched_pick(s, NULL);
        late += (intptr_t)vt_sched_job_ud(j) == 1;
        now += 1;
        vt_sched_charge(s, j, 1, now);
    }
    VT_CHECK(late >= 9 && late <= 11);
    vt_sched_free(s);
}

static void test_no_banking(vt_backend *be)
{
    (void)be;
    check_no_banking(0);
}

/* ready() of the tests below: the job's ud points at its "has work" flag. */
static int flag_ready(void *ud) { return *(const int *)ud; }

/* A job without work (reading its data) is passed over, its user's turn
 * going to the others; with work again, it is picked; with none having
 * work, there is no pick. */
static void test_jobs_without_work_passed_over(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    int work[3] = {0, 1, 1}; /* job 0 (user 1000) reads; jobs 1, 2 (user 1001) train */
    int count[3] = {0, 0, 0};
    (void)be;
    VT_CHECK(vt_sched_add(s, 0, 1000, 1, &work[0]) && vt_sched_add(s, 1, 1001, 1, &work[1]) &&
             vt_sched_add(s, 2, 1001, 1, &work[2]));
    while (vt_sched_admit(s, 100))
        ;
    for (int i = 0; i < 10; i++) {
        vt_sched_job *j = vt_sched_pick(s, flag_ready);
        VT_CHECK(j && (int *)vt_sched_job_ud(j) != &work[0]);
        count[(int *)vt_sched_job_ud(j) - work]++;
        vt_sched_charge(s, j, 1, i);
    }
    VT_CHECK_INT(count[1], 5); /* within the user, still turn about */
    work[0] = 1;
    VT_CHECK_INT(vt_sched_busy(s), 2); /* (job 0 was passed over) */
    vt_sched_job *j = vt_sched_pick(s, flag_ready);
    VT_CHECK(j && vt_sched_job_ud(j) == &work[0]);
    VT_CHECK_INT(vt_sched_busy(s), 3);
    work[0] = work[1] = work[2] = 0;
    VT_CHECK(vt_sched_pick(s, flag_ready) == NULL);
    int running, waiting;
    vt_sched_counts(s, &running, &waiting); /* still running: they hold their place */
    VT_CHECK_INT(running, 3);
    vt_sched_free(s);
}

/* n picks with flag_ready, each charged 1 s from *now on; returns how
 * many went to the job whose ud is `count`, or -1 when one went nowhere
 * or (with `only` set) to another job than the one whose ud it is. */
static int one_second_picks(vt_sched *s, int n, double *now, const void *only, const void *count)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        vt_sched_job *j = vt_sched_pick(s, flag_ready);
        if (!j || (only && vt_sched_job_ud(j) != only))
            return -1;
        got += vt_sched_job_ud(j) == count;
        *now += 1;
        vt_sched_charge(s, j, 1, *now);
    }
    return got;
}

/* A user whose only job waited (for its data) while another user's job
 * had the device for 100 s does not then get 100 s in a row: it comes back
 * as a user who becomes active, 1 s (VT__BANK_S) made up, and the two
 * share evenly from there. */
static void test_waiting_not_banked(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    int work[2] = {1, 0};
    double now = 0;
    (void)be;
    VT_CHECK(vt_sched_add(s, 1, 1000, 1, &work[0]) && vt_sched_add(s, 2, 1001, 1, &work[1]));
    while (vt_sched_admit(s, 100))
        ;
    VT_CHECK(one_second_picks(s, 100, &now, &work[0], NULL) == 0);
    work[1] = 1;
    VT_CHECK_NEAR(one_second_picks(s, 20, &now, NULL, &work[1]), 10, 1);
    vt_sched_free(s);
}

/* Short waits are made up: user 1000's one job waits (its epoch end's
 * files) 5 picks in 15, while user 1001's two jobs always have work; of
 * 0.1 s picks, 1000 still gets half the device.  (Caught up to 1001's time
 * at each return, as after a long wait, it got a third.) */
static void test_short_waits_made_up(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    int work[3] = {1, 1, 1};
    double now = 0, used[2] = {0, 0};
    (void)be;
    VT_CHECK(vt_sched_add(s, 1, 1000, 1, &work[0]) && vt_sched_add(s, 2, 1001, 1, &work[1]) &&
             vt_sched_add(s, 3, 1001, 1, &work[2]));
    while (vt_sched_admit(s, 100))
        ;
    for (int i = 0; i < 4000; i++) {
        work[0] = i % 15 < 10;
        vt_sched_job *j = vt_sched_pick(s, flag_ready);
        VT_CHECK(j != NULL);
        used[vt_sched_job_ud(j) != &work[0]] += 0.1;
        now += 0.1;
        vt_sched_charge(s, j, 0.1, now);
    }
    VT_CHECK_NEAR(used[0] / (used[0] + used[1]), 0.5, 0.02);
    vt_sched_free(s);
}

/* The same when nobody else has work at the moment it comes back: user
 * 1000's job waits while user 1001's first job has the device for 100 s
 * and ends; 1000's job then runs alone for 10 s; 1001's next job does not
 * wait 90 s for 1000 to use up the time it waited. */
static void test_waiting_not_banked_alone(vt_backend *be)
{
    vt_sched *s = vt_sched_new(8);
    int work[3] = {0, 1, 1};
    double now = 0;
    (void)be;
    VT_CHECK(vt_sched_add(s, 1, 1000, 1, &work[0]) && vt_sched_add(s, 2, 1001, 1, &work[1]));
    while (vt_sched_admit(s, 100))
        ;
    VT_CHECK(one_second_picks(s, 100, &now, &work[1], NULL) == 0);
    vt_sched_remove(s, vt_sched_find(s, 2));
    work[0] = 1;
    VT_CHECK(one_second_picks(s, 10, &now, &work[0], NULL) == 0);
    VT_CHECK(vt_sched_add(s, 3, 1001, 1, &work[2]) && vt_sched_admit(s, 100));
    VT_CHECK_NEAR(one_second_picks(s, 20, &now, NULL, &work[2]), 10, 1);
    vt_sched_free(s);
}

/* A request takes its turns with its user's jobs: user 1000 with two jobs
 * and user 1001 with only a request share the device equally, and a
 * request of user 1000 beside its jobs does not add to that user's share.
 * Requests start without admission (even with a large job waiting and no
 * memory free), are not counted as jobs, cannot be found by id, and a
 * user who has only a request is listed. */
static void test_requests_share_with_jobs(vt_backend *be)
{
    vt_sched *s = vt_sched_new(1);
    vt_sched_job *r, *big;
    vt_sched_user u[4];
    double used[3] = {0, 0, 0}, cost[3] = {0.1, 0.1, 0.1};
    int running, waiting, n;
    (void)be;
    VT_CHECK(vt_sched_add(s, 1, 1000, 1, (void *)0));
    VT_CHECK(vt_sched_add(s, 2, 1000, 1, (void *)0)); /* over max_running 1: waits */
    VT_CHECK(vt_sched_admit(s, 10));
    VT_CHECK(!vt_sched_admit(s, 10));
    VT_CHECK((big = vt_sched_add(s, 3, 1002, 1000, (void *)2)));
    VT_CHECK(!vt_sched_admit(s, 10)); /* too big: it waits, and nothing overtakes it */
    VT_CHECK((r = vt_sched_add_request(s, 1001, (void *)1)));
    VT_CHECK(vt_sched_is_request(r));
    vt_sched_counts(s, &running, &waiting);
    VT_CHECK_INT(running, 1);
    VT_CHECK_INT(waiting, 2);
    VT_CHECK(vt_sched_find(s, 0) == NULL);
    n = vt_sched_users(s, u, 4, 0);
    VT_CHECK_INT(n, 3);
    for (int i = 0; i < n; i++)
        if (u[i].uid == 1001)
            VT_CHECK(u[i].running == 0 && u[i].waiting == 0 && u[i].requests == 1);
    simulate(s, 1000, cost, used);
    VT_CHECK_NEAR(used[1] / (used[0] + used[1]), 0.5, 0.01);
    VT_CHECK_NEAR(used[2], 0, 0);
    /* A request of 1000's own: its two entries share that user's half. */
    VT_CHECK(vt_sched_add_request(s, 1000, (void *)0));
    double used2[3] = {0, 0, 0};
    simulate(s, 1000, cost, used2);
    VT_CHECK_NEAR(used2[1] / (used2[0] + used2[1]), 0.5, 0.01);
    vt_sched_remove(s, r);
    n = vt_sched_users(s, u, 4, 0);
    VT_CHECK_INT(n, 2); /* 1001 had only the request */
    vt_sched_free(s);
}

static void test_request_not_banked(vt_backend *be)
{
    (void)be;
    check_no_banking(1);
}

static const vt_test_case cases[] = {
    {"equal_share_per_user", test_equal_share_per_user, 0},
    {"share_of_listed_users", test_share_of_listed_users, 0},
    {"round_robin_within_user", test_round_robin_within_user, 0},
    {"admission", test_admission, 0},
    {"no_banking", test_no_banking, 0},
    {"jobs_without_work_passed_over", test_jobs_without_work_passed_over, 0},
    {"waiting_not_banked", test_waiting_not_banked, 0},
    {"waiting_not_banked_alone", test_waiting_not_banked_alone, 0},
    {"short_waits_made_up", test_short_waits_made_up, 0},
    {"requests_share_with_jobs", test_requests_share_with_jobs, 0},
    {"request_not_banked", test_request_not_banked, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

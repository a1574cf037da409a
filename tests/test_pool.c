/* test_pool.c - the decode pool (common/pool.h): a task blocked in a call
 * gets a stand-in thread beside it, so that the tasks queued behind still
 * run; a long task that keeps its CPU busy does not; stand-ins end once
 * the blocked tasks return. */
#include <stdatomic.h>
#include <time.h>

#include "common/clock.h"
#include "common/pool.h"
#include "vt_test.h"

typedef struct {
    atomic_int gate;    /* blocked tasks wait until this is set */
    atomic_int blocked, ran;
    double spin_s;      /* busy tasks use the CPU this long */
    double busy_end;    /* when the busy task ended (vt_clock_mono) */
    double after_start; /* when the task queued behind it began */
} work;

static void sleep_ms(int ms) { nanosleep(&(struct timespec){.tv_nsec = ms * 1000000L}, NULL); }

/* Like a read on a mount that does not answer: waits, using no CPU. */
static void blocked(void *arg)
{
    work *w = arg;
    atomic_fetch_add(&w->blocked, 1);
    while (!atomic_load(&w->gate))
        sleep_ms(1);
    atomic_fetch_sub(&w->blocked, 1);
}

static void quick(void *arg) { atomic_fetch_add(&((work *)arg)->ran, 1); }

/* A long decode: keeps its CPU busy for spin_s. */
static void busy(void *arg)
{
    work *w = arg;
    volatile double x = 0;
    double end = vt_clock_mono() + w->spin_s;
    while (vt_clock_mono() < end)
        for (int i = 0; i < 10000; i++)
            x += i;
    w->busy_end = vt_clock_mono();
    atomic_fetch_add(&w->ran, 1);
}

static void after(void *arg)
{
    work *w = arg;
    w->after_start = vt_clock_mono();
    atomic_fetch_add(&w->ran, 1);
}

/* Waits up to `seconds` for cond(w). */
static int wait_until(int (*cond)(work *, vt_pool *), work *w, vt_pool *p, double seconds)
{
    double end = vt_clock_mono() + seconds;
    while (!cond(w, p) && vt_clock_mono() < end)
        sleep_ms(2);
    return cond(w, p);
}
static int both_blocked(work *w, vt_pool *p) { (void)p; return atomic_load(&w->blocked) == 2; }
static int quick_ran(work *w, vt_pool *p) { (void)p; return atomic_load(&w->ran) == 4; }
static int none_blocked(work *w, vt_pool *p) { (void)p; return atomic_load(&w->blocked) == 0; }
static int both_ran(work *w, vt_pool *p) { (void)p; return atomic_load(&w->ran) == 2; }
static int no_standins(work *w, vt_pool *p) { (void)w; return vt_pool_standins(p) == 0; }

/* Both workers blocked: the tasks queued behind run on stand-ins, which
 * end once the blocked tasks have returned (and the pool still works). */
static void test_standins(vt_backend *be)
{
    static work w;
    vt_pool *p = NULL;
    (void)be;
    VT_CHECK_OK(vt_pool_create(&p, 2));
    vt_pool_set_stuck_after(p, 0.2);
    VT_CHECK_OK(vt_pool_submit(p, blocked, &w));
    VT_CHECK_OK(vt_pool_submit(p, blocked, &w));
    VT_CHECK(wait_until(both_blocked, &w, p, 10));
    for (int i = 0; i < 4; i++)
        VT_CHECK_OK(vt_pool_submit(p, quick, &w));
    /* (without stand-ins these would wait for the gate, which never opens) */
    VT_CHECK(wait_until(quick_ran, &w, p, 20));
    VT_CHECK(vt_pool_standins(p) >= 1 && vt_pool_standins(p) <= 2);
    VT_CHECK_INT(vt_pool_threads(p), 2);
    atomic_store(&w.gate, 1);
    VT_CHECK(wait_until(none_blocked, &w, p, 10));
    VT_CHECK(wait_until(no_standins, &w, p, 10));
    atomic_store(&w.ran, 0);
    for (int i = 0; i < 4; i++)
        VT_CHECK_OK(vt_pool_submit(p, quick, &w));
    VT_CHECK(wait_until(quick_ran, &w, p, 10));
    vt_pool_free(p);
}

/* A task that runs long but uses its CPU is not stuck: the task queued
 * behind it on a one-worker pool waits for it, on no stand-in. */
static void test_busy_is_not_stuck(vt_backend *be)
{
    static work w = {.spin_s = 1.0};
    vt_pool *p = NULL;
    (void)be;
    VT_CHECK_OK(vt_pool_create(&p, 1));
    vt_pool_set_stuck_after(p, 0.2);
    VT_CHECK_OK(vt_pool_submit(p, busy, &w));
    VT_CHECK_OK(vt_pool_submit(p, after, &w));
    VT_CHECK(wait_until(both_ran, &w, p, 20));
    VT_CHECK(w.after_start >= w.busy_end);
    VT_CHECK_INT(vt_pool_standins(p), 0);
    vt_pool_free(p);
}

/* A long read on a slow (not dead) mount: its CPU in bursts, with pauses
 * that are short beside the watcher's look (over half of a CPU in all). */
static void bursty(void *arg)
{
    work *w = arg;
    volatile double x = 0;
    double end = vt_clock_mono() + w->spin_s;
    while (vt_clock_mono() < end) {
        double burst = vt_clock_mono() + 0.06;
        while (vt_clock_mono() < burst)
            for (int i = 0; i < 10000; i++)
                x += i;
        sleep_ms(40);
    }
    w->busy_end = vt_clock_mono();
    atomic_fetch_add(&w->ran, 1);
}

/* Tasks submitted often wake the watcher often: a pause of the long task
 * between two looks close together is not taken for a stuck task (the
 * share of a CPU is judged over the watcher's own interval). */
static void test_pauses_are_not_stuck(vt_backend *be)
{
    static work w = {.spin_s = 1.5};
    vt_pool *p = NULL;
    int standins = 0;
    (void)be;
    VT_CHECK_OK(vt_pool_create(&p, 1));
    vt_pool_set_stuck_after(p, 0.2);
    VT_CHECK_OK(vt_pool_submit(p, bursty, &w));
    while (atomic_load(&w.ran) == 0) {
        VT_CHECK_OK(vt_pool_submit(p, quick, &w));
        if (vt_pool_standins(p) > standins)
            standins = vt_pool_standins(p);
        sleep_ms(3);
    }
    VT_CHECK_INT(standins, 0);
    vt_pool_free(p);
}

static const vt_test_case cases[] = {
    {"standins", test_standins, 0},
    {"busy_is_not_stuck", test_busy_is_not_stuck, 0},
    {"pauses_are_not_stuck", test_pauses_are_not_stuck, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

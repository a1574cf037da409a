/* test_bg.c - a call on a thread of its own (common/bg.h): joined when it
 * is over, or let go of while it runs (it then frees its own work and
 * calls nobody back), or after it ended. */
#include <stdatomic.h>
#include <time.h>

#include "common/bg.h"
#include "common/clock.h"
#include "vt_test.h"

typedef struct {
    atomic_int gate;    /* run waits until this is set, or its stop is */
    atomic_int saw_stop;
    atomic_int ran, dropped, done;
} work;

static void run(void *arg, const atomic_int *stop)
{
    work *w = arg;
    while (!atomic_load(&w->gate) && !atomic_load(stop))
        nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    atomic_store(&w->saw_stop, atomic_load(stop));
    atomic_fetch_add(&w->ran, 1);
}

/* Like a call stuck on a dead mount: sees no stop, only the gate. */
static void run_stuck(void *arg, const atomic_int *stop)
{
    work *w = arg;
    (void)stop;
    while (!atomic_load(&w->gate))
        nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    atomic_fetch_add(&w->ran, 1);
}

static void drop(void *arg) { atomic_fetch_add(&((work *)arg)->dropped, 1); }
static void done(void *ud) { atomic_fetch_add(&((work *)ud)->done, 1); }

/* Waits up to 10 s for *v to become want. */
static int wait_for(atomic_int *v, int want)
{
    for (int i = 0; i < 10000 && atomic_load(v) != want; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000 * 1000}, NULL);
    return atomic_load(v) == want;
}

static void test_join(vt_backend *be)
{
    static work w;
    vt_bg_calls c = {.run = run, .drop = drop, .done = done, .ud = &w};
    vt_bg *b = NULL;
    (void)be;
    VT_CHECK_OK(vt_bg_start(&b, &c, &w));
    VT_CHECK(!vt_bg_finished(b));
    atomic_store(&w.gate, 1);
    VT_CHECK(wait_for(&w.done, 1));
    VT_CHECK(vt_bg_finished(b));
    vt_bg_join(b);
    VT_CHECK(atomic_load(&w.ran) == 1 && !atomic_load(&w.saw_stop));
    VT_CHECK_INT(atomic_load(&w.dropped), 0); /* the work is the caller's again */
}

static void test_abandon_running(vt_backend *be)
{
    static work w;
    vt_bg_calls c = {.run = run, .drop = drop, .done = done, .ud = &w};
    vt_bg *b = NULL;
    (void)be;
    VT_CHECK_OK(vt_bg_start(&b, &c, &w));
    vt_bg_abandon(b); /* returns without waiting: run is still in its loop */
    VT_CHECK(wait_for(&w.dropped, 1));
    VT_CHECK(atomic_load(&w.ran) == 1 && atomic_load(&w.saw_stop));
    VT_CHECK_INT(atomic_load(&w.done), 0); /* nobody is called back once let go */
}

/* Let go of while run is stuck (it does not look at its stop): abandon
 * returns at once, and when run ends later the thread drops the work and
 * calls nobody back. */
static void test_abandon_stuck(vt_backend *be)
{
    static work w;
    vt_bg_calls c = {.run = run_stuck, .drop = drop, .done = done, .ud = &w};
    vt_bg *b = NULL;
    (void)be;
    VT_CHECK_OK(vt_bg_start(&b, &c, &w));
    vt_bg_abandon(b); /* (were it to wait for run, this would hang) */
    VT_CHECK_INT(atomic_load(&w.ran), 0);
    VT_CHECK_INT(atomic_load(&w.dropped), 0);
    atomic_store(&w.gate, 1);
    VT_CHECK(wait_for(&w.dropped, 1));
    VT_CHECK_INT(atomic_load(&w.ran), 1);
    VT_CHECK_INT(atomic_load(&w.done), 0);
}

static void test_abandon_finished(vt_backend *be)
{
    static work w;
    vt_bg_calls c = {.run = run, .drop = drop, .done = done, .ud = &w};
    vt_bg *b = NULL;
    (void)be;
    atomic_store(&w.gate, 1);
    VT_CHECK_OK(vt_bg_start(&b, &c, &w));
    VT_CHECK(wait_for(&w.done, 1));
    while (!vt_bg_finished(b))
        ;
    vt_bg_abandon(b);
    VT_CHECK_INT(atomic_load(&w.dropped), 1); /* dropped before abandon returned */
}

/* vt_bg_wait returns after its time while run goes on, and once run has
 * returned. */
static void test_wait(vt_backend *be)
{
    static work w;
    vt_bg_calls c = {.run = run, .drop = drop, .done = done, .ud = &w};
    vt_bg *b = NULL;
    (void)be;
    VT_CHECK_OK(vt_bg_start(&b, &c, &w));
    double t0 = vt_clock_mono();
    vt_bg_wait(b, 0.2);
    VT_CHECK(vt_clock_mono() - t0 >= 0.19 && !vt_bg_finished(b));
    atomic_store(&w.gate, 1);
    vt_bg_wait(b, 30);
    VT_CHECK(vt_bg_finished(b));
    vt_bg_join(b);
    VT_CHECK_INT(atomic_load(&w.ran), 1);
}

static const vt_test_case cases[] = {
    {"join", test_join, 0},
    {"wait", test_wait, 0},
    {"abandon_running", test_abandon_running, 0},
    {"abandon_stuck", test_abandon_stuck, 0},
    {"abandon_finished", test_abandon_finished, 0},
};

int main(int argc, char **argv) { VT_TEST_MAIN(cases); }

/* bg.c - a call on a thread of its own (see bg.h). */
#include "bg.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"

struct vt_bg {
    vt_bg_calls calls;
    void *arg;
    pthread_t thread;
    atomic_int stop;     /* the caller let go: run may return early */
    pthread_mutex_t mu;  /* guards finished and orphaned; held around done() */
    pthread_cond_t cv;   /* broadcast when finished is set (vt_clock_cond_init) */
    int finished;        /* run has returned */
    int orphaned;        /* the caller let go: the thread frees b */
};

static void vt__free(vt_bg *b)
{
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

static void *vt__main(void *p)
{
    vt_bg *b = p;
    int orphaned;
    b->calls.run(b->arg, &b->stop);
    pthread_mutex_lock(&b->mu);
    b->finished = 1;
    pthread_cond_broadcast(&b->cv);
    orphaned = b->orphaned;
    if (!orphaned && b->calls.done)
        b->calls.done(b->calls.ud);
    pthread_mutex_unlock(&b->mu);
    if (orphaned) { /* detached by vt_bg_abandon: nobody else holds b */
        if (b->calls.drop)
            b->calls.drop(b->arg);
        vt__free(b);
    }
    return NULL;
}

int vt_bg_start(vt_bg **out, const vt_bg_calls *calls, void *arg)
{
    vt_bg *b = calloc(1, sizeof *b);
    *out = NULL;
    if (!b)
        return vt_error_set(VT_ENOMEM, "out of memory");
    b->calls = *calls;
    b->arg = arg;
    atomic_init(&b->stop, 0);
    pthread_mutex_init(&b->mu, NULL);
    vt_clock_cond_init(&b->cv);
    if (pthread_create(&b->thread, NULL, vt__main, b) != 0) {
        vt__free(b);
        return vt_error_set(VT_ENOMEM, "cannot start a thread");
    }
    *out = b;
    return 0;
}

int vt_bg_finished(vt_bg *b)
{
    int f;
    pthread_mutex_lock(&b->mu);
    f = b->finished;
    pthread_mutex_unlock(&b->mu);
    return f;
}

void vt_bg_wait(vt_bg *b, double seconds)
{
    struct timespec until = vt_clock_deadline(seconds);
    pthread_mutex_lock(&b->mu);
    while (!b->finished && pthread_cond_timedwait(&b->cv, &b->mu, &until) == 0)
        ;
    pthread_mutex_unlock(&b->mu);
}

void vt_bg_join(vt_bg *b)
{
    if (!b)
        return;
    pthread_join(b->thread, NULL);
    vt__free(b);
}

void vt_bg_abandon(vt_bg *b)
{
    int finished;
    if (!b)
        return;
    atomic_store(&b->stop, 1);
    pthread_mutex_lock(&b->mu);
    finished = b->finished;
    if (!finished) {
        /* (detached under the mutex: once it is released the thread may
         * free b, and with it the thread id) */
        b->orphaned = 1;
        pthread_detach(b->thread);
    }
    pthread_mutex_unlock(&b->mu);
    if (finished) { /* run is over: no reason to leave it to the thread */
        pthread_join(b->thread, NULL);
        if (b->calls.drop)
            b->calls.drop(b->arg);
        vt__free(b);
    }
}

void vt_bg_test_hold(const char *name)
{
    const char *dir = getenv("VT_TEST_READ_HOLD");
    char hold[PATH_MAX], held[PATH_MAX + 8];
    int fd;
    if (!dir || !*dir || !name || !*name)
        return;
    snprintf(hold, sizeof hold, "%s/%s", dir, name);
    if (access(hold, F_OK) < 0)
        return;
    snprintf(held, sizeof held, "%s.held", hold);
    if ((fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)) >= 0)
        close(fd);
    while (access(hold, F_OK) == 0)
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
}

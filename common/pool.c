/* pool.c - worker pool with a FIFO task queue and stand-ins for stuck
 * workers (see pool.h).
 *
 * Every worker has a record (vt__worker) on the pool's list, with the time
 * its task began.  A watcher thread sleeps while the queue is empty; while
 * tasks wait, it looks twice a second for stuck workers: those whose task
 * has run for longer than stuck_s while their thread used almost no CPU
 * time (blocked in a call, as a read on a file system that does not
 * answer; a long decode is busy, not stuck).  When fewer than nthreads
 * workers are free of stuck tasks, it starts another (a stand-in), up to
 * VT_POOL_STANDINS_MAX.  A worker that finds the queue empty while more than
 * nthreads are free (a stuck read came back) ends, and the watcher joins
 * it.
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"
#include "log.h"

#define VT__STUCK_S 5.0         /* a task blocked longer is taken for stuck */
#define VT__BUSY 0.1            /* ... unless its thread used this share of a CPU */
#define VT__WATCH_S 0.5         /* how often the watcher looks while tasks wait */

typedef struct vt__task {
    vt_pool_fn fn;
    void *arg;
    struct vt__task *next;
} vt__task;

typedef struct vt__worker {
    struct vt_pool *pool;
    pthread_t thread;
    double since;               /* when its task began (vt_clock_mono), < 0: none */
    double cpu_mark, mark_at;   /* its thread's CPU seconds at mark_at (vt_clock_mono):
                                   its task's start, then the watcher's last look */
    int stuck;                  /* its task is taken for stuck (until it ends) */
    int ended;                  /* it has returned: to be joined */
    struct vt__worker *next;
} vt__worker;

struct vt_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* a task queued, or stopping (workers) */
    pthread_cond_t watch_cv;    /* a task queued, or stopping (the watcher) */
    vt__task *head, *tail;
    int stopping;
    int nthreads;               /* the workers asked for */
    int live;                   /* workers not ended */
    int standins_said;          /* the stand-in count last logged (0, then powers of 2) */
    double stuck_s;
    vt__worker *workers;        /* every worker, ended ones until joined */
    pthread_t watcher;
    int watching;               /* the watcher was started */
};

/* Workers neither ended nor stuck (p->mu held). */
static int vt__free_workers(const vt_pool *p)
{
    int n = 0;
    for (const vt__worker *w = p->workers; w; w = w->next)
        n += !w->ended && !w->stuck;
    return n;
}

/* CPU seconds thread has used; 0 when they cannot be had. */
static double vt__cpu_seconds(pthread_t thread)
{
    clockid_t clock;
    struct timespec ts;
    if (pthread_getcpuclockid(thread, &clock) != 0 || clock_gettime(clock, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Marks the workers whose task has run longer than stuck_s, using less
 * than VT__BUSY of a CPU since the last look (p->mu held).  The share is
 * judged over VT__WATCH_S at least: every submit wakes the watcher, and
 * over a few milliseconds a busy thread that was not scheduled, or paused
 * between two reads, uses no CPU either. */
static void vt__find_stuck(vt_pool *p)
{
    double now = vt_clock_mono();
    for (vt__worker *w = p->workers; w; w = w->next) {
        if (w->ended || w->since < 0 || w->stuck || now - w->mark_at < VT__WATCH_S)
            continue;
        double cpu = vt__cpu_seconds(w->thread);
        if (now - w->since > p->stuck_s && cpu - w->cpu_mark < VT__BUSY * (now - w->mark_at))
            w->stuck = 1;
        w->cpu_mark = cpu;
        w->mark_at = now;
    }
}

static void *vt__work(void *arg)
{
    vt__worker *w = arg;
    vt_pool *p = w->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->head && !p->stopping) {
            if (vt__free_workers(p) > p->nthreads)
                goto end; /* a stand-in no longer needed */
            pthread_cond_wait(&p->cv, &p->mu);
        }
        vt__task *t = p->head;
        if (!t) /* stopping and drained */
            break;
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        w->since = w->mark_at = vt_clock_mono();
        w->cpu_mark = vt__cpu_seconds(pthread_self());
        pthread_mutex_unlock(&p->mu);
        t->fn(t->arg);
        free(t);
        pthread_mutex_lock(&p->mu);
        w->since = -1;
        w->stuck = 0;
    }
end:
    w->ended = 1;
    if (--p->live <= p->nthreads && p->standins_said > 0 && !p->stopping) {
        vt_log_info("decoding: the blocked tasks have returned; back to %d thread%s",
                    p->nthreads, p->nthreads == 1 ? "" : "s");
        p->standins_said = 0;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts a worker (p->mu held). */
static int vt__start_worker(vt_pool *p)
{
    vt__worker *w = calloc(1, sizeof *w);
    if (!w)
        return vt_error_set(VT_ENOMEM, "out of memory");
    w->pool = p;
    w->since = -1;
    if (pthread_create(&w->thread, NULL, vt__work, w) != 0) {
        free(w);
        return vt_error_set(VT_ENOMEM, "cannot start a decode thread");
    }
    w->next = p->workers;
    p->workers = w;
    p->live++;
    return 0;
}

/* Joins and frees the workers that have ended (p->mu held: each ended
 * worker released it for the last time as it ended). */
static void vt__join_ended(vt_pool *p)
{
    for (vt__worker **at = &p->workers; *at;) {
        vt__worker *w = *at;
        if (!w->ended) {
            at = &w->next;
            continue;
        }
        *at = w->next;
        pthread_join(w->thread, NULL);
        free(w);
    }
}

/* The watcher: starts stand-ins while tasks wait and workers are stuck. */
static void *vt__watch(void *arg)
{
    vt_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        vt__join_ended(p);
        if (!p->head) {
            pthread_cond_wait(&p->watch_cv, &p->mu);
            continue;
        }
        vt__find_stuck(p);
        if (vt__free_workers(p) < p->nthreads &&
            p->live < p->nthreads + VT_POOL_STANDINS_MAX && vt__start_worker(p) == 0) {
            int standins = p->live - p->nthreads;
            if (standins >= 2 * p->standins_said) {
                vt_log_warn("decoding: tasks blocked for more than %g s (a file system that "
                            "does not answer?); %d more thread%s started beside them",
                            p->stuck_s, standins, standins == 1 ? "" : "s");
                p->standins_said = standins;
            }
            continue;
        }
        struct timespec until = vt_clock_deadline(VT__WATCH_S);
        pthread_cond_timedwait(&p->watch_cv, &p->mu, &until);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int vt_pool_create(vt_pool **out, int nthreads)
{
    vt_pool *p = calloc(1, sizeof *p);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int rc = 0;

    *out = NULL;
    if (!p)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if (nthreads <= 0)
        nthreads = cores > 0 ? (int)cores : 1;
    p->nthreads = nthreads;
    p->stuck_s = VT__STUCK_S;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    vt_clock_cond_init(&p->watch_cv);
    pthread_mutex_lock(&p->mu); /* (each worker reads the list as it starts) */
    for (int i = 0; rc == 0 && i < nthreads; i++)
        rc = vt__start_worker(p);
    if (rc == 0 && pthread_create(&p->watcher, NULL, vt__watch, p) != 0)
        rc = vt_error_set(VT_ENOMEM, "cannot start the decode pool's watcher thread");
    p->watching = rc == 0;
    pthread_mutex_unlock(&p->mu);
    if (rc < 0) {
        vt_pool_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int vt_pool_submit(vt_pool *p, vt_pool_fn fn, void *arg)
{
    vt__task *t = malloc(sizeof *t);
    if (!t)
        return vt_error_set(VT_ENOMEM, "out of memory");
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    pthread_cond_signal(&p->cv);
    pthread_cond_signal(&p->watch_cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int vt_pool_threads(const vt_pool *p) { return p->nthreads; }

void vt_pool_set_stuck_after(vt_pool *p, double seconds)
{
    pthread_mutex_lock(&p->mu);
    p->stuck_s = seconds;
    pthread_cond_signal(&p->watch_cv);
    pthread_mutex_unlock(&p->mu);
}

int vt_pool_standins(vt_pool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->live > p->nthreads ? p->live - p->nthreads : 0;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void vt_pool_free(vt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_cond_signal(&p->watch_cv);
    pthread_mutex_unlock(&p->mu);
    if (p->watching)
        pthread_join(p->watcher, NULL);
    /* (no worker starts or is freed from here on) */
    for (vt__worker *w = p->workers, *next; w; w = next) {
        next = w->next;
        pthread_join(w->thread, NULL);
        free(w);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->watch_cv);
    free(p);
}

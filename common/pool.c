/* pool.c - fixed worker pool with a FIFO task queue (see pool.h). */
#include "pool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"

typedef struct vt__task {
    vt_pool_fn fn;
    void *arg;
    struct vt__task *next;
} vt__task;

struct vt_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vt__task *head, *tail;
    int stopping;
    int nthreads;
    pthread_t *threads;
};

static void *vt__worker(void *arg)
{
    vt_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cv, &p->mu);
        vt__task *t = p->head;
        if (!t) { /* stopping and drained */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = t->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        t->fn(t->arg);
        free(t);
    }
}

int vt_pool_create(vt_pool **out, int nthreads)
{
    vt_pool *p = calloc(1, sizeof *p);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    *out = NULL;
    if (!p)
        return vt_error_set(VT_ENOMEM, "out of memory");
    if (nthreads <= 0)
        nthreads = cores > 0 ? (int)cores : 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!(p->threads = calloc((size_t)nthreads, sizeof *p->threads))) {
        vt_pool_free(p);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    for (int i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, vt__worker, p) != 0) {
            vt_pool_free(p);
            return vt_error_set(VT_ENOMEM, "cannot start decode thread %d", i);
        }
        p->nthreads++;
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
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int vt_pool_threads(const vt_pool *p) { return p->nthreads; }

void vt_pool_free(vt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p);
}

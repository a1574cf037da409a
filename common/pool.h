/* pool.h - a fixed pool of worker threads running queued tasks.
 *
 * The daemon's decode pool: image decoding (and other blocking file work)
 * runs here, never on the libuv loop thread or the device thread.  Tasks run
 * in submission order (FIFO) on whichever worker is free.
 */
#ifndef VT_POOL_H
#define VT_POOL_H

typedef struct vt_pool vt_pool;
typedef void (*vt_pool_fn)(void *arg);

/* Starts nthreads workers (0 = one per core) into *out (free with
 * vt_pool_free).  VT_ENOMEM when memory or a thread cannot be had. */
int vt_pool_create(vt_pool **out, int nthreads);

/* Queues fn(arg); arg stays the caller's and must live until fn has run.
 * Never blocks on the work itself.  VT_ENOMEM (nothing queued). */
int vt_pool_submit(vt_pool *p, vt_pool_fn fn, void *arg);

/* Number of worker threads. */
int vt_pool_threads(const vt_pool *p);

/* Runs every task still queued, then stops and joins the workers and frees
 * the pool.  NULL is a no-op. */
void vt_pool_free(vt_pool *p);

#endif

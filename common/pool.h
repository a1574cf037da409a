/* pool.h - a pool of worker threads running queued tasks.
 *
 * The daemon's decode pool: image decoding (and other blocking file work)
 * runs here, never on the libuv loop thread or the device thread.  Tasks run
 * in submission order (FIFO) on whichever worker is free.
 *
 * A task blocked in a call that does not return (a read on a dead network
 * mount) would keep its worker; with as many as there are workers, every
 * job's decoding would stop.  So while tasks wait, a worker whose task
 * has run for more than a few seconds (vt_pool_set_stuck_after) using
 * almost no CPU is taken for stuck, and another thread (a stand-in) is
 * started beside it, up to VT_POOL_STANDINS_MAX; each stand-in ends once the pool has more
 * free workers than it was asked for.  The log says when stand-ins start
 * and when the blocked tasks have returned.
 */
#ifndef VT_POOL_H
#define VT_POOL_H

/* At most this many stand-ins run beside the workers asked for (a dead
 * mount under a job's prefetched batches can hold as many reads). */
#define VT_POOL_STANDINS_MAX 256

typedef struct vt_pool vt_pool;
typedef void (*vt_pool_fn)(void *arg);

/* Starts nthreads workers (0 = one per core) into *out (free with
 * vt_pool_free).  VT_ENOMEM when memory or a thread cannot be had. */
int vt_pool_create(vt_pool **out, int nthreads);

/* Queues fn(arg); arg stays the caller's and must live until fn has run.
 * Never blocks on the work itself.  VT_ENOMEM (nothing queued). */
int vt_pool_submit(vt_pool *p, vt_pool_fn fn, void *arg);

/* Number of worker threads asked for (stand-ins not counted). */
int vt_pool_threads(const vt_pool *p);

/* Takes a task for stuck once it has run for more than `seconds` (5 by
 * default) with its thread using under a tenth of a CPU. */
void vt_pool_set_stuck_after(vt_pool *p, double seconds);

/* Threads running beside the workers asked for (stand-ins for stuck ones). */
int vt_pool_standins(vt_pool *p);

/* Runs every task still queued, then stops and joins the workers (a
 * stuck one too: this waits for its call to return) and frees the pool.
 * NULL is a no-op. */
void vt_pool_free(vt_pool *p);

#endif

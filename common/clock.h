/* clock.h - the process's two clocks, in seconds.
 *
 * vt_clock_mono for durations and deadlines (never steps), vt_clock_wall for
 * times that are recorded or shown (Unix seconds).  Any thread. */
#ifndef VT_CLOCK_H
#define VT_CLOCK_H

#include <pthread.h>
#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
static inline double vt_clock_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Unix time in seconds (CLOCK_REALTIME). */
static inline double vt_clock_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Initialises cv to time its waits on CLOCK_MONOTONIC (a step of the wall
 * clock neither shortens nor stretches them): for vt_clock_deadline. */
static inline void vt_clock_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* The CLOCK_MONOTONIC time `seconds` from now: the deadline of a
 * pthread_cond_timedwait on a condition variable vt_clock_cond_init made. */
static inline struct timespec vt_clock_deadline(double seconds)
{
    struct timespec ts;
    double at = vt_clock_mono() + seconds;
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec > 999999999)
        ts.tv_nsec = 999999999;
    return ts;
}

#endif

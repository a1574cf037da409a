/* bg.h - one call run on a thread of its own, which the caller polls,
 * waits for, or lets go of without waiting.
 *
 * For file work that must not hold up the thread that started it (the
 * device thread): a read stuck in one call on a dead network mount would
 * otherwise stop every job.  The caller that lets go (vt_bg_abandon) never
 * waits; the thread finishes its call, frees what the call worked on with
 * the given drop function, and ends by itself.
 */
#ifndef VT_BG_H
#define VT_BG_H

#include <stdatomic.h>

typedef struct vt_bg vt_bg;

typedef struct {
    /* The work, on the new thread.  *stop is set once the caller has let
     * go; run should look at it between slow calls and return early. */
    void (*run)(void *arg, const atomic_int *stop);
    /* Frees arg, on the thread, after run returns - only when the caller
     * let go (otherwise arg is the caller's again after vt_bg_join). */
    void (*drop)(void *arg);
    /* Optional: called on the thread once run has returned, unless the
     * caller has let go (never after vt_bg_abandon has returned). */
    void (*done)(void *ud);
    void *ud;
} vt_bg_calls;

/* Starts calls->run(arg, stop) on a new thread.  VT_ENOMEM when memory or
 * a thread cannot be had (nothing runs; arg is still the caller's). */
int vt_bg_start(vt_bg **out, const vt_bg_calls *calls, void *arg);

/* Whether run has returned (never blocks). */
int vt_bg_finished(vt_bg *b);

/* Waits up to `seconds` for run to return (at once when it has). */
void vt_bg_wait(vt_bg *b, double seconds);

/* Waits for run to return, joins the thread and frees b; arg is the
 * caller's again.  NULL is a no-op. */
void vt_bg_join(vt_bg *b);

/* Lets go without waiting: sets the stop flag and leaves the thread to
 * drop(arg) and free b when run returns.  Neither b nor arg may be used
 * after.  NULL is a no-op. */
void vt_bg_abandon(vt_bg *b);

/* VT_TEST_READ_HOLD=DIR (tests only): while DIR/name exists, waits (after
 * creating DIR/name.held, for the test to know), so that a test can hold
 * a reading thread (by the job's name, an eval's folder's or a predict's
 * first image's; a job's init model or checkpoint by its file name), a
 * writing thread (by the written file's name; the work on a job's output
 * folder by the job's name and ".output" between making the folder and
 * claiming it, ".params" before making the job's parameters, ".takeover"
 * before taking the folder over, ".discard" before putting it back in
 * order), the decoding of an image (by its file name) or the device thread as it stops
 * (".vggtuned-stopped") for as long as it needs.  Like a call stuck on a dead
 * mount, the wait does not see a stop.  Returns at once without the
 * variable. */
void vt_bg_test_hold(const char *name);

#endif

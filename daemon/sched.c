/* sched.c - fair-share step scheduling and admission (see sched.h). */
#include "sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VT__HALF_LIFE 30.0 /* seconds, for the "recent share" figure */

struct vt_sched_job {
    int64_t id;
    uid_t uid;
    size_t bytes;
    void *ud;
    int running;
    int request;        /* a prediction or evaluation: running, not a job */
    int held, was_held; /* running without work (ready() said no) at the last
                           pick, and at the one before */
    uint64_t seq;      /* submission order */
    uint64_t last_run; /* turn counter value when last stepped */
};

typedef struct {
    uid_t uid;
    double vtime;      /* device seconds, for choosing */
    double total;      /* device seconds, for reporting */
    double recent;     /* decayed device seconds */
    double recent_at;  /* time of the last decay */
    int running, waiting; /* jobs */
    int requests;
} vt__user;

struct vt_sched {
    int max_running;
    vt_sched_job **jobs; /* n, in submission order */
    int n, cap;
    vt__user *users;
    int nusers, ucap;
    uint64_t seq, turn;
    double vnow; /* the virtual time of the user picked last (the largest so
                    far): where the device's time has got to */
};

vt_sched *vt_sched_new(int max_running_per_user)
{
    vt_sched *s = calloc(1, sizeof *s);
    if (s)
        s->max_running = max_running_per_user;
    return s;
}

void vt_sched_free(vt_sched *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        free(s->jobs[i]);
    free(s->jobs);
    free(s->users);
    free(s);
}

static vt__user *vt__user_get(vt_sched *s, uid_t uid)
{
    for (int i = 0; i < s->nusers; i++)
        if (s->users[i].uid == uid)
            return &s->users[i];
    if (s->nusers == s->ucap) {
        int cap = s->ucap ? 2 * s->ucap : 8;
        vt__user *u = realloc(s->users, sizeof *u * (size_t)cap);
        if (!u)
            return NULL;
        s->users = u;
        s->ucap = cap;
    }
    vt__user *u = &s->users[s->nusers++];
    memset(u, 0, sizeof *u);
    u->uid = uid;
    return u;
}

/* Appends a new entry for user uid (counted by neither figure yet). */
static vt_sched_job *vt__append(vt_sched *s, int64_t id, uid_t uid, size_t bytes, void *ud)
{
    vt_sched_job *j = calloc(1, sizeof *j);
    if (!j || !vt__user_get(s, uid)) {
        free(j);
        return NULL;
    }
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        vt_sched_job **nj = realloc(s->jobs, sizeof *nj * (size_t)cap);
        if (!nj) {
            free(j);
            return NULL;
        }
        s->jobs = nj;
        s->cap = cap;
    }
    *j = (vt_sched_job){.id = id, .uid = uid, .bytes = bytes, .ud = ud, .seq = s->seq++};
    s->jobs[s->n++] = j;
    return j;
}

vt_sched_job *vt_sched_add(vt_sched *s, int64_t id, uid_t uid, size_t est_bytes, void *ud)
{
    vt_sched_job *j = vt__append(s, id, uid, est_bytes, ud);
    if (j)
        vt__user_get(s, uid)->waiting++;
    return j;
}

/* Device seconds a user whose jobs all waited (for their data, or their
 * files) keeps of what the others used meanwhile: short waits, an epoch
 * end's writes, are made up (a job that waits now and then still gets its
 * user's share), a long one costs the others at most this much. */
#define VT__BANK_S 1.0

/* Brings a user who becomes active (kept 0), or has work again (kept
 * VT__BANK_S), up to `kept` seconds short of m, the smallest virtual time
 * of the others (+inf when none counts), and never further behind the user
 * picked last.  Without that floor, a user who waited while another had
 * the device alone would, when the other had gone by the time it came
 * back, be owed all that time when the other returns. */
static void vt__catch_up(const vt_sched *s, vt__user *u, double m, double kept)
{
    double start = (isfinite(m) && m > s->vnow ? m : s->vnow) - kept;
    if (u->vtime < start)
        u->vtime = start;
}

/* Whether the user has something that runs: jobs or requests. */
static int vt__active(const vt__user *u) { return u->running > 0 || u->requests > 0; }

/* Smallest virtual time among users with running jobs or requests (or
 * +inf). */
static double vt__min_active_vtime(const vt_sched *s)
{
    double m = INFINITY;
    for (int i = 0; i < s->nusers; i++)
        if (vt__active(&s->users[i]) && s->users[i].vtime < m)
            m = s->users[i].vtime;
    return m;
}

vt_sched_job *vt_sched_add_request(vt_sched *s, uid_t uid, void *ud)
{
    vt_sched_job *j = vt__append(s, 0, uid, 0, ud);
    vt__user *u;
    if (!j)
        return NULL;
    u = vt__user_get(s, uid);
    if (!vt__active(u))
        vt__catch_up(s, u, vt__min_active_vtime(s), 0);
    j->running = j->request = 1;
    u->requests++;
    return j;
}

int vt_sched_is_request(const vt_sched_job *j) { return j->request; }

vt_sched_job *vt_sched_admit(vt_sched *s, size_t free_bytes)
{
    for (int i = 0; i < s->n; i++) {
        vt_sched_job *j = s->jobs[i];
        vt__user *u;
        if (j->running)
            continue;
        u = vt__user_get(s, j->uid);
        if (u->running >= s->max_running)
            continue;
        if (j->bytes > free_bytes)
            return NULL; /* no overtaking */
        if (!vt__active(u))
            vt__catch_up(s, u, vt__min_active_vtime(s), 0);
        j->running = 1;
        u->running++;
        u->waiting--;
        return j;
    }
    return NULL;
}

/* Whether the user uid has a running job with work now (after: with work
 * at the pick before too). */
static int vt__has_work(const vt_sched *s, uid_t uid, int before)
{
    for (int i = 0; i < s->n; i++) {
        const vt_sched_job *j = s->jobs[i];
        if (j->running && j->uid == uid && !j->held && (!before || !j->was_held))
            return 1;
    }
    return 0;
}

/* Smallest virtual time of the users other than uid with a job that had
 * work at the pick before and has now (or +inf). */
static double vt__min_busy_vtime(vt_sched *s, uid_t uid)
{
    double m = INFINITY;
    for (int i = 0; i < s->nusers; i++)
        if (s->users[i].uid != uid && s->users[i].vtime < m &&
            vt__has_work(s, s->users[i].uid, 1))
            m = s->users[i].vtime;
    return m;
}

vt_sched_job *vt_sched_pick(vt_sched *s, int (*ready)(void *ud))
{
    vt__user *best = NULL;
    vt_sched_job *pick = NULL;
    for (int i = 0; i < s->n; i++) {
        vt_sched_job *j = s->jobs[i];
        j->was_held = j->held;
        j->held = j->running && ready && !ready(j->ud);
    }
    /* A user all of whose jobs waited comes back, once one has work, as a
     * user who becomes active, with up to VT__BANK_S of the time spent
     * waiting made up. */
    for (int i = 0; i < s->n; i++) {
        vt_sched_job *j = s->jobs[i];
        if (j->running && j->was_held && !j->held && !vt__has_work(s, j->uid, 1))
            vt__catch_up(s, vt__user_get(s, j->uid), vt__min_busy_vtime(s, j->uid), VT__BANK_S);
    }
    for (int i = 0; i < s->nusers; i++)
        if (vt__active(&s->users[i]) && (!best || s->users[i].vtime < best->vtime) &&
            vt__has_work(s, s->users[i].uid, 0))
            best = &s->users[i];
    if (!best)
        return NULL;
    if (best->vtime > s->vnow)
        s->vnow = best->vtime;
    /* Within the user: the running job with work stepped longest ago. */
    for (int i = 0; i < s->n; i++) {
        vt_sched_job *j = s->jobs[i];
        if (j->running && !j->held && j->uid == best->uid &&
            (!pick || j->last_run < pick->last_run))
            pick = j;
    }
    pick->last_run = ++s->turn;
    return pick;
}

static void vt__decay(vt__user *u, double now)
{
    if (now > u->recent_at) {
        u->recent *= exp2(-(now - u->recent_at) / VT__HALF_LIFE);
        u->recent_at = now;
    }
}

void vt_sched_charge(vt_sched *s, vt_sched_job *j, double seconds, double now)
{
    vt__user *u = vt__user_get(s, j->uid);
    if (!u)
        return;
    u->vtime += seconds;
    u->total += seconds;
    vt__decay(u, now);
    u->recent += seconds;
}

void vt_sched_remove(vt_sched *s, vt_sched_job *j)
{
    vt__user *u = vt__user_get(s, j->uid);
    for (int i = 0; i < s->n; i++)
        if (s->jobs[i] == j) {
            memmove(&s->jobs[i], &s->jobs[i + 1], sizeof *s->jobs * (size_t)(s->n - i - 1));
            s->n--;
            break;
        }
    if (u) {
        if (j->request)
            u->requests--;
        else if (j->running)
            u->running--;
        else
            u->waiting--;
    }
    free(j);
}

vt_sched_job *vt_sched_first(vt_sched *s) { return s->n ? s->jobs[0] : NULL; }

vt_sched_job *vt_sched_find(vt_sched *s, int64_t id)
{
    for (int i = 0; i < s->n; i++)
        if (s->jobs[i]->id == id && !s->jobs[i]->request)
            return s->jobs[i];
    return NULL;
}

void *vt_sched_job_ud(const vt_sched_job *j) { return j->ud; }

void vt_sched_counts(const vt_sched *s, int *running, int *waiting)
{
    *running = *waiting = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->jobs[i]->request)
            continue;
        if (s->jobs[i]->running)
            (*running)++;
        else
            (*waiting)++;
    }
}

int vt_sched_busy(const vt_sched *s)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->jobs[i]->running && !s->jobs[i]->held;
    return n;
}

int vt_sched_users(vt_sched *s, vt_sched_user *out, int max, double now)
{
    double sum = 0;
    int n = 0;
    for (int i = 0; i < s->nusers; i++) {
        vt__decay(&s->users[i], now);
        if (vt__active(&s->users[i]) || s->users[i].waiting)
            sum += s->users[i].recent;
    }
    for (int i = 0; i < s->nusers && n < max; i++) {
        const vt__user *u = &s->users[i];
        if (!vt__active(u) && !u->waiting) /* as PROTOCOL.md says: users with work */
            continue;
        out[n++] = (vt_sched_user){.uid = u->uid, .running = u->running,
                                   .waiting = u->waiting, .requests = u->requests,
                                   .device_s = u->total,
                                   .share = sum > 0 ? u->recent / sum : 0};
    }
    return n;
}

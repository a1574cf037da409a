/* store.c - SQLite persistence of jobs (see store.h). */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../common/error.h"

struct vt_store {
    sqlite3 *db;
    char id[VT_STORE_ID_LEN + 1]; /* this store's identity, hex */
    int full; /* the last call that failed found the disk full */
    char *path; /* the database file, for messages */
};

static const char *const vt__schema =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS jobs("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  uid INTEGER NOT NULL, gid INTEGER NOT NULL, user TEXT NOT NULL,"
    "  name TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,"
    "  submitted REAL NOT NULL, started REAL, finished REAL,"
    "  epochs_done INTEGER NOT NULL DEFAULT 0, error TEXT, reason TEXT, preprocess TEXT,"
    "  trunk TEXT);"
    "CREATE TABLE IF NOT EXISTS metrics("
    "  job INTEGER NOT NULL REFERENCES jobs(id), epoch INTEGER NOT NULL,"
    "  body TEXT NOT NULL, PRIMARY KEY(job, epoch));"
    "CREATE TABLE IF NOT EXISTS events("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  job INTEGER NOT NULL REFERENCES jobs(id), time REAL NOT NULL,"
    "  level TEXT NOT NULL, message TEXT NOT NULL);"
    /* a watch replays one job's latest events */
    "CREATE INDEX IF NOT EXISTS events_job ON events(job, seq);"
    /* key 'id': random, made with the store; with a job's number, it
     * names the job that wrote a model (ids start again in a new store) */
    "CREATE TABLE IF NOT EXISTS store(key TEXT PRIMARY KEY, value TEXT NOT NULL);";

/* The error of a database file SQLite finds damaged or not a database at
 * all, saying what an administrator can do; 0 for other errors. */
static int vt__damaged(vt_store *s, const char *what, const char *detail)
{
    int code = sqlite3_errcode(s->db);
    if (code != SQLITE_CORRUPT && code != SQLITE_NOTADB)
        return 0;
    return vt_error_set(VT_EIO, "job store %s is damaged (%s: %s): restore it from a backup, "
                        "or move it aside to start with no jobs (their output folders stay)",
                        s->path, what, detail);
}

static int vt__db_error(vt_store *s, const char *what)
{
    int rc;
    s->full = sqlite3_errcode(s->db) == SQLITE_FULL;
    if ((rc = vt__damaged(s, what, sqlite3_errmsg(s->db))) < 0)
        return rc;
    return vt_error_set(VT_EIO, "job store: %s: %s", what, sqlite3_errmsg(s->db));
}

static void vt__bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static void vt__bind_time(sqlite3_stmt *st, int i, double t)
{
    if (t > 0)
        sqlite3_bind_double(st, i, t);
    else
        sqlite3_bind_null(st, i);
}

/* Prepares sql, or returns NULL with the error recorded. */
static sqlite3_stmt *vt__prepare(vt_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        vt__db_error(s, "prepare");
        return NULL;
    }
    return st;
}

/* Steps a write statement to completion and finalises it.  A row about a
 * job that is not in the store (a foreign key) is VT_ENOTFOUND. */
static int vt__finish(vt_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = 0;
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_FOREIGNKEY
                 ? vt_error_set(VT_ENOTFOUND, "job store: %s: the job is not in the store", what)
                 : vt__db_error(s, what);
    sqlite3_finalize(st);
    return rc;
}

/* A store made before the jobs table had column `name` (a TEXT) gets it,
 * empty in every row. */
static int vt__add_column(vt_store *s, const char *name)
{
    sqlite3_stmt *st = vt__prepare(s, "SELECT 1 FROM pragma_table_info('jobs') WHERE name = ?");
    char sql[96], *err = NULL;
    int rc = 0, step;
    if (!st)
        return VT_EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_ROW)
        return 0;
    if (step != SQLITE_DONE)
        return vt__db_error(s, "read the jobs table's columns");
    snprintf(sql, sizeof sql, "ALTER TABLE jobs ADD COLUMN %s TEXT", name);
    if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK)
        rc = vt_error_set(VT_EIO, "job store: adding the %s column: %s", name,
                          err ? err : sqlite3_errmsg(s->db));
    sqlite3_free(err);
    return rc;
}

/* Columns added since the first stores: preprocess, then trunk. */
static int vt__migrate(vt_store *s)
{
    int rc = vt__add_column(s, "preprocess");
    return rc < 0 ? rc : vt__add_column(s, "trunk");
}

/* Reads the store's id into s->id, making one first in a new store. */
static int vt__load_id(vt_store *s)
{
    unsigned char raw[VT_STORE_ID_LEN / 2];
    char hex[VT_STORE_ID_LEN + 1];
    sqlite3_stmt *st;
    int rc;

    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return vt_error_set(VT_EIO, "job store: no random bytes for its id");
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    if (!(st = vt__prepare(s, "INSERT OR IGNORE INTO store(key, value) VALUES('id', ?)")))
        return VT_EIO;
    sqlite3_bind_text(st, 1, hex, -1, SQLITE_TRANSIENT);
    if ((rc = vt__finish(s, st, "store id")) < 0)
        return rc;
    if (!(st = vt__prepare(s, "SELECT value FROM store WHERE key = 'id'")))
        return VT_EIO;
    rc = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)
             ? 0 : vt__db_error(s, "store id");
    if (rc == 0)
        snprintf(s->id, sizeof s->id, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc;
}

int vt_store_open(vt_store **out, const char *path)
{
    vt_store *s = calloc(1, sizeof *s);
    char *err = NULL;
    int rc;

    *out = NULL;
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return vt_error_set(VT_ENOMEM, "out of memory");
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                          SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
        rc = vt_error_set(VT_EIO, "cannot open job store %s: %s", path,
                              s->db ? sqlite3_errmsg(s->db) : "out of memory");
        vt_store_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (sqlite3_exec(s->db, vt__schema, NULL, NULL, &err) != SQLITE_OK) {
        if ((rc = vt__damaged(s, "open", err ? err : "schema failed")) == 0)
            rc = vt_error_set(VT_EIO, "job store %s: %s", path, err ? err : "schema failed");
        sqlite3_free(err);
        vt_store_close(s);
        return rc;
    }
    if ((rc = vt__migrate(s)) < 0 || (rc = vt__load_id(s)) < 0) {
        vt_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const char *vt_store_id(const vt_store *s) { return s->id; }

int vt_store_full(const vt_store *s) { return s->full; }

void vt_store_close(vt_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

int vt_store_insert(vt_store *s, const vt_store_job *j, int64_t *id)
{
    sqlite3_stmt *st = vt__prepare(s,
        "INSERT INTO jobs(uid,gid,user,name,spec,state,submitted,started,finished,"
        "epochs_done,error,reason) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)");
    int rc;
    if (!st)
        return VT_EIO;
    sqlite3_bind_int64(st, 1, j->uid);
    sqlite3_bind_int64(st, 2, j->gid);
    vt__bind_text(st, 3, j->user);
    vt__bind_text(st, 4, j->name);
    vt__bind_text(st, 5, j->spec);
    vt__bind_text(st, 6, j->state);
    sqlite3_bind_double(st, 7, j->submitted);
    vt__bind_time(st, 8, j->started);
    vt__bind_time(st, 9, j->finished);
    sqlite3_bind_int(st, 10, j->epochs_done);
    vt__bind_text(st, 11, j->error);
    vt__bind_text(st, 12, j->reason);
    if ((rc = vt__finish(s, st, "insert job")) == 0)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

int vt_store_set_spec(vt_store *s, int64_t job, const char *spec, const char *preprocess,
                      const char *trunk)
{
    sqlite3_stmt *st = vt__prepare(s, "UPDATE jobs SET spec=?, preprocess=?, trunk=? WHERE id=?");
    if (!st)
        return VT_EIO;
    vt__bind_text(st, 1, spec);
    vt__bind_text(st, 2, preprocess);
    vt__bind_text(st, 3, trunk);
    sqlite3_bind_int64(st, 4, job);
    return vt__finish(s, st, "record the job document");
}

int vt_store_update(vt_store *s, const vt_store_job *j)
{
    int rc;
    sqlite3_stmt *st = vt__prepare(s,
        "UPDATE jobs SET state=?,started=?,finished=?,epochs_done=?,error=?,reason=? "
        "WHERE id=?");
    if (!st)
        return VT_EIO;
    vt__bind_text(st, 1, j->state);
    vt__bind_time(st, 2, j->started);
    vt__bind_time(st, 3, j->finished);
    sqlite3_bind_int(st, 4, j->epochs_done);
    vt__bind_text(st, 5, j->error);
    vt__bind_text(st, 6, j->reason);
    sqlite3_bind_int64(st, 7, j->id);
    if ((rc = vt__finish(s, st, "update job")) == 0 && sqlite3_changes(s->db) == 0)
        rc = vt_error_set(VT_ENOTFOUND, "job store: job %lld is not in the store",
                          (long long)j->id);
    return rc;
}

/* The statements of vt_store_put_metrics (inside its transaction). */
static int vt__put_metrics(vt_store *s, int64_t job, int epoch, const char *json,
                           int drop_later)
{
    sqlite3_stmt *st = vt__prepare(s,
        "INSERT OR REPLACE INTO metrics(job,epoch,body) VALUES(?,?,?)");
    int rc;
    if (!st)
        return VT_EIO;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, epoch);
    vt__bind_text(st, 3, json);
    if ((rc = vt__finish(s, st, "record metrics")) < 0 || !drop_later)
        return rc;
    /* a job resumed from an earlier checkpoint reports its epochs again */
    if (!(st = vt__prepare(s, "DELETE FROM metrics WHERE job=? AND epoch>?")))
        return VT_EIO;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, epoch);
    return vt__finish(s, st, "drop later metrics");
}

int vt_store_put_metrics(vt_store *s, int64_t job, int epoch, const char *json, int drop_later)
{
    int rc;
    if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return vt__db_error(s, "begin");
    rc = vt__put_metrics(s, job, epoch, json, drop_later);
    if (sqlite3_exec(s->db, rc == 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL) != SQLITE_OK &&
        rc == 0) {
        rc = vt__db_error(s, "commit");
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

int vt_store_add_event(vt_store *s, int64_t job, const char *level, const char *message)
{
    sqlite3_stmt *st = vt__prepare(s,
        "INSERT INTO events(job,time,level,message) VALUES(?,julianday('now'),?,?)");
    if (!st)
        return VT_EIO;
    sqlite3_bind_int64(st, 1, job);
    vt__bind_text(st, 2, level);
    vt__bind_text(st, 3, message);
    return vt__finish(s, st, "record event");
}

static const char *vt__col(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

int vt_store_each_job(vt_store *s, int (*cb)(void *ud, const vt_store_job *j), void *ud)
{
    sqlite3_stmt *st = vt__prepare(s,
        "SELECT id,uid,gid,user,name,spec,state,submitted,started,finished,epochs_done,"
        "error,reason,preprocess,trunk FROM jobs ORDER BY id");
    int step, rc = 0;
    if (!st)
        return VT_EIO;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        vt_store_job j = {
            .id = sqlite3_column_int64(st, 0),
            .uid = (uid_t)sqlite3_column_int64(st, 1),
            .gid = (gid_t)sqlite3_column_int64(st, 2),
            .user = vt__col(st, 3),
            .name = vt__col(st, 4),
            .spec = vt__col(st, 5),
            .state = vt__col(st, 6),
            .submitted = sqlite3_column_double(st, 7),
            .started = sqlite3_column_double(st, 8),
            .finished = sqlite3_column_double(st, 9),
            .epochs_done = sqlite3_column_int(st, 10),
            .error = vt__col(st, 11),
            .reason = vt__col(st, 12),
            .preprocess = vt__col(st, 13),
            .trunk = vt__col(st, 14),
        };
        if ((rc = cb(ud, &j)) != 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = vt__db_error(s, "read jobs");
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

int vt_store_each_metrics(vt_store *s, int64_t job,
                          int (*cb)(void *ud, int epoch, const char *json), void *ud)
{
    sqlite3_stmt *st = vt__prepare(s,
        "SELECT epoch, body FROM metrics WHERE job=? ORDER BY epoch");
    int step, rc = 0;
    if (!st)
        return VT_EIO;
    sqlite3_bind_int64(st, 1, job);
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = cb(ud, sqlite3_column_int(st, 0), vt__col(st, 1))) != 0)
            break;
    if (rc == 0 && step != SQLITE_DONE)
        rc = vt__db_error(s, "read metrics");
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

int vt_store_each_event(vt_store *s, int64_t job, int limit,
                        int (*cb)(void *ud, const char *level, const char *message), void *ud)
{
    sqlite3_stmt *st = vt__prepare(s,
        "SELECT level, message FROM (SELECT seq, level, message FROM events WHERE job=? "
        "ORDER BY seq DESC LIMIT ?) ORDER BY seq");
    int step, rc = 0;
    if (!st)
        return VT_EIO;
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_int(st, 2, limit);
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = cb(ud, vt__col(st, 0), vt__col(st, 1))) != 0)
            break;
    if (rc == 0 && step != SQLITE_DONE)
        rc = vt__db_error(s, "read events");
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

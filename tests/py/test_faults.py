#!/usr/bin/env python3
"""Nothing is lost: kill -9, SIGTERM, restart, full disks.

  kill -9 while one job runs, one waits and one has finished; restart: the
  running job resumes from its last checkpoint and ends bit-identical to an
  uninterrupted run, the waiting one runs, the finished one's outputs and
  history are intact.
  SIGTERM mid-epoch: exit 0 within seconds, resume mid-epoch, bit-identical.
  A full disk and a read-only output directory fail that job with a clear
  message; the daemon and other jobs go on.
  A failed device call fails that job alone; a sticky device error fails
  the job it hit and ends the daemon (status 1), and after the restart the
  job beside it runs to the end.
  Checkpoints that cannot be written: the job goes on, each failure
  doubling the wait before the next try; after keep_best's model, the older
  checkpoint goes, and a stop starts the job over.
  Records the job store refused are written again once it takes writes,
  each epoch's under its own number, log events included; one whose job
  row was deleted by hand is given up, once.  A submission a full state
  directory cannot record is refused as the administrator's to fix.
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402
from vtdaemon import Daemon, job_spec, make_data  # noqa: E402

a = vtpy.args()
(np,) = vtpy.need("numpy")
from safetensors.numpy import load_file  # noqa: E402

TMP = vtpy.tmpdir(a.keep)
DATA = make_data(a.build, os.path.join(TMP, "data"), per_class=24)
VGGTUNED = os.path.join(a.build, "daemon", "vggtuned")


def spec_file(name, **extra):
    spec = job_spec(DATA, os.path.join(TMP, "out", name), head={"dense": [64, 32],
                                                                 "dropout": 0.2}, **extra)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def reference(name, **extra):
    """The same job straight through in the foreground."""
    path = spec_file(name + "_ref", **extra)
    vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--threads", "2", path])
    return os.path.join(TMP, "out", name + "_ref")


def same_model(out, ref, what):
    x = load_file(os.path.join(out, "model.safetensors"))
    y = load_file(os.path.join(ref, "model.safetensors"))
    diff = [k for k in y if not np.array_equal(x[k], y[k])]
    vtpy.check(set(x) == set(y) and not diff, f"{what}: tensors differ: {diff[:4]}")
    mx = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    my = [json.loads(l) for l in open(os.path.join(ref, "metrics.jsonl"))]
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    vtpy.check([[m[k] for k in keys] for m in mx] == [[m[k] for k in keys] for m in my],
               f"{what}: metrics differ")


def after_first_epoch(daemon, job):
    """Waits until the job has finished an epoch (or has ended); its status."""
    deadline = time.time() + 300
    while time.time() < deadline:
        st = daemon.cli_json("status", str(job))["job"]
        if st["epochs_done"] >= 1 or st["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    return st


@contextlib.contextmanager
def tmpfs_state_daemon(name, size, folder="", est_bps="1e15"):
    """A started daemon whose state directory (or its folder, such as
    "checkpoints") is a tmpfs of size (mount's "256k"; or its options, as
    "nr_inodes=1"); it estimates writing a checkpoint at est_bps bytes/s
    (the default: one after every epoch).  A body that ends with the daemon
    up ends with a stop that must exit 0; the daemon is killed if still up
    (a body that failed) and the tmpfs unmounted."""
    d = Daemon(a.build, TMP, name=name, start=False,
               env=dict(os.environ, VT_CHECKPOINT_EST_BPS=est_bps))
    where = os.path.join(d.state, folder)
    os.makedirs(where)
    opts = size if "=" in size else f"size={size}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", where], check=True)
    try:
        d.start()
        yield d
        if d.proc and d.proc.poll() is None:
            rc, _ = d.stop()
            vtpy.check(rc == 0, f"{name}: stop: {rc}")
    finally:
        if d.proc and d.proc.poll() is None:
            d.kill9()
        subprocess.run(["umount", where])


def checkpoint_failures(daemon, job):
    """The daemon's log lines of the job's checkpoints that failed (each a
    warning: the job goes on)."""
    return [line for line in daemon.log_text().splitlines()
            if f"job {job}: " in line and "; the job goes on" in line]


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def pause(proc):
    """SIGSTOP, and waits until every thread of proc has stopped."""
    os.kill(proc.pid, signal.SIGSTOP)
    deadline = time.time() + 10
    tasks = f"/proc/{proc.pid}/task"
    while time.time() < deadline:
        states = []
        for t in os.listdir(tasks):
            try:
                with open(f"{tasks}/{t}/stat") as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if all(s in "tTZX" for s in states):
            return
        time.sleep(0.001)
    vtpy.fail(f"vggtuned {proc.pid} did not stop")


def store_rows(state, sql, *args):
    db = sqlite3.connect(f"file:{state}/jobs.db?mode=ro", uri=True)
    rows = db.execute(sql, args).fetchall()
    db.close()
    return rows


def wait_resaved(dm, job):
    """Waits for the daemon dm to say that job's record is written again."""
    deadline = time.time() + 30
    while f"job {job}: its record in the store is up to date again" not in dm.log_text():
        if time.time() > deadline:
            vtpy.fail(f"the record was not written again: {dm.log_text()[-600:]}")
        time.sleep(0.1)


def store_edit(state, sql):
    """Runs sql on the store, as a hand edit does (the daemon may be up)."""
    db = sqlite3.connect(os.path.join(state, "jobs.db"), timeout=30)
    db.executescript(sql)
    db.close()


def epochs_done(daemon, job, n):
    """Waits until the job has done n epochs, or more.  (Asked without the
    client, whose output would be the job's every epoch at each poll.)"""
    deadline = time.time() + 300
    while True:
        r = daemon.raw()
        done = r.request({"op": "job", "job": job})["job"]["epochs_done"]
        r.close()
        if done >= n:
            return
        if time.time() > deadline:
            vtpy.fail(f"job {job} did not reach epoch {n} (at {done})")
        time.sleep(0.05)


# ---- kill -9 with a running, a queued and a finished job ---------------------
# (Writing a checkpoint estimated as instant: every epoch end writes one,
# however short the run; the throttle has its own test in test_resume.py.)
d = Daemon(a.build, TMP, extra=["--max-running", "1"],
           env=dict(os.environ, VT_CHECKPOINT_EST_BPS="1e15"))
done = d.cli_json("submit", "--spec", spec_file("finished", epochs=1))["job"]["id"]
d.wait_state(done, ["succeeded"])
done_hash = sha(os.path.join(TMP, "out", "finished", "model.safetensors"))
run_id = d.cli_json("submit", "--spec", spec_file("killed", epochs=5))["job"]["id"]
# The waiting job starts from the finished one (init_job, --init-head): the
# store keeps init_job and the restarted daemon resolves it again.  It gives
# no head layout: the finished job's is taken (the store must not turn the
# mode's default into one it gave, which would then conflict).
wait_path = spec_file("waiting", epochs=1, init_job=done)
wait_doc = json.load(open(wait_path))
del wait_doc["head"]["dense"]
with open(wait_path, "w") as f:
    json.dump(wait_doc, f)
wait_id = d.cli_json("submit", "--spec", wait_path)["job"]["id"]
deadline = time.time() + 300
while time.time() < deadline:
    j = d.cli_json("status", str(run_id))["job"]
    if j["epochs_done"] >= 2:
        break
    time.sleep(0.05)
vtpy.check(d.cli_json("status", str(wait_id))["job"]["state"] == "queued",
           "the second job should be waiting (max-running 1)")
d.kill9()
# As an older vggtuned stored it: init (the resolved model) beside init_job,
# and no preprocess column (the daemon adds it).
db = sqlite3.connect(os.path.join(d.state, "jobs.db"))
db.execute("ALTER TABLE jobs DROP COLUMN preprocess")
(doc,) = db.execute("SELECT spec FROM jobs WHERE id = ?", (wait_id,)).fetchone()
doc = json.loads(doc)
doc["init"] = os.path.join(TMP, "out", "finished", "model.safetensors")
db.execute("UPDATE jobs SET spec = ? WHERE id = ?", (json.dumps(doc), wait_id))
db.commit()
db.close()
d.start()
jobs = {j["id"]: j for j in d.cli_json("list")["jobs"]}
vtpy.check(set(jobs) >= {done, run_id, wait_id} and "unreadable spec" not in d.log_text(),
           f"jobs lost in the restart: {sorted(jobs)}: {d.log_text()[-600:]}")
vtpy.check(jobs[done]["state"] == "succeeded", f"finished job after restart: {jobs[done]}")
vtpy.check(jobs[wait_id]["state"] == "queued", f"waiting job after restart: {jobs[wait_id]}")
vtpy.check(jobs[run_id]["state"] in ("queued", "running"), f"killed job: {jobs[run_id]}")
full = d.cli_json("status", str(done))["job"]
vtpy.check(len(full["metrics"]) == 1, "the finished job's history is intact")
d.wait_state(run_id, ["succeeded"])
d.wait_state(wait_id, ["succeeded"])
vtpy.check(f"job {wait_id}: initialised" in d.log_text() and
           "out/finished/model.safetensors" in d.log_text(),
           "the init_job job did not start from the finished job's model after the restart")
vtpy.check("resumes from its last checkpoint" in d.log_text(), "no resume was logged")
vtpy.check(sha(os.path.join(TMP, "out", "finished", "model.safetensors")) == done_hash,
           "the finished job's model changed")
j = d.cli_json("status", str(run_id))["job"]
vtpy.check(len(j["metrics"]) == 5 and [m["epoch"] for m in j["metrics"]] == [1, 2, 3, 4, 5],
           f"resumed job's epochs: {[m['epoch'] for m in j['metrics']]}")
same_model(os.path.join(TMP, "out", "killed"), reference("killed", epochs=5), "kill -9")
vtpy.check(not os.listdir(os.path.join(d.state, "checkpoints")),
           "checkpoints of finished jobs should be removed")

# ---- SIGTERM mid-epoch ----------------------------------------------------------
# Batch 4 over 72 rows: 18 steps an epoch, of about 20 ms each when the
# features are cached; a poll on a loaded machine can miss one epoch's first
# half, so any cached epoch but the last will do (epoch 1 fills the cache).
term_spec = dict(epochs=8, batch_size=4, augment={"flip": True})
term = d.cli_json("submit", "--spec", spec_file("term", **term_spec))["job"]["id"]
deadline = time.time() + 300
while True:
    p = d.cli_json("status", str(term))["job"].get("progress")
    if p and 2 <= p["epoch"] < 8 and 0 < p["step"] < p["steps"] // 2:  # (half an epoch to go)
        break
    if time.time() > deadline or (p and p["epoch"] >= 8):
        vtpy.fail(f"never saw job {term} in the first half of epochs 2-7 (last progress {p})")
    time.sleep(0.02)
rc, secs = d.stop()
vtpy.check(rc == 0 and secs < 20, f"SIGTERM: exit {rc} after {secs:.1f}s")
vtpy.check("checkpointed for restart" in d.log_text(), "SIGTERM did not checkpoint the job")
d.start()
d.wait_state(term, ["succeeded"])
vtpy.check("continuing the next one where it stopped" in d.log_text(),
           "the job did not resume mid-epoch")
same_model(os.path.join(TMP, "out", "term"), reference("term", **term_spec), "SIGTERM")

# ---- full disk and read-only output ----------------------------------------------
if os.geteuid() == 0:
    full_dir = os.path.join(TMP, "full")
    ro_dir = os.path.join(TMP, "ro")
    os.makedirs(full_dir)
    os.makedirs(ro_dir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full_dir], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=256k", "tmpfs", ro_dir], check=True)
    try:
        f1 = d.cli_json("submit", "--spec", spec_file("full", epochs=1,
                                                      output=os.path.join(full_dir, "o")))
        r2 = d.cli("--json", "submit", "--spec", spec_file("ro", epochs=1,
                                                           output=os.path.join(ro_dir, "o")))
        f2 = json.loads(r2.stdout)
        # (the client warns, as for a folder the user may not write)
        vtpy.check(f"warning: --out {ro_dir}/o: {ro_dir} is on a read-only file system; the "
                   "job will fail unless that changes" in r2.stderr,
                   f"no warning for a read-only output: {r2.stderr!r}")
        ok = d.cli_json("submit", "--spec", spec_file("fine", epochs=1))
        j1 = d.wait_state(f1["job"]["id"], ["failed", "succeeded"])
        j2 = d.wait_state(f2["job"]["id"], ["failed", "succeeded"])
        j3 = d.wait_state(ok["job"]["id"], ["failed", "succeeded"])
        vtpy.check(j1["state"] == "failed" and "No space left" in j1.get("error", ""),
                   f"full disk: {j1}")
        vtpy.check(j2["state"] == "failed" and "Read-only" in j2.get("error", ""),
                   f"read-only output: {j2}")
        vtpy.check(j3["state"] == "succeeded", f"the other job: {j3}")
    finally:
        subprocess.run(["umount", full_dir])
        subprocess.run(["umount", ro_dir])
else:
    print("SKIP part: full disk and read-only output need root (tmpfs mounts)")

# ---- a queued job that can never fit, restored from the store -----------------
# (submission refuses those once the device is up; one that got in anyway,
# e.g. queued for another device, fails when it reaches the device rather
# than holding up every job behind it)
ran_prep = d.cli_json("status", str(run_id))["job"].get("preprocess")
vtpy.check(ran_prep, f"job {run_id} shows no resolved preprocessing")
rc, _ = d.stop()
db = sqlite3.connect(os.path.join(d.state, "jobs.db"))
uid, gid, user, spec = db.execute("SELECT uid, gid, user, spec FROM jobs LIMIT 1").fetchone()
spec = json.loads(spec)
spec.update(name="huge", output=os.path.join(TMP, "out", "huge"),
            head=dict(spec["head"], dense=[65536] * 7))
spec["data"]["image_size"] = 1024
with db:
    huge = db.execute("INSERT INTO jobs(uid, gid, user, name, spec, state, submitted) "
                      "VALUES (?, ?, ?, 'huge', ?, 'queued', 0)",
                      (uid, gid, user, json.dumps(spec))).lastrowid
db.close()
d.start()
got = d.cli_json("status", str(run_id))["job"].get("preprocess")
vtpy.check(got == ran_prep, f"resolved preprocessing after a restart: {got} (was {ran_prep})")
after = d.cli_json("submit", "--spec", spec_file("after-huge", epochs=1))["job"]["id"]
jh = d.wait_state(huge, ["failed", "succeeded", "running"], timeout=60)
ja = d.wait_state(after, ["failed", "succeeded"])
vtpy.check(jh["state"] == "failed" and "of device memory" in jh.get("error", "") and
           "head.dense" in jh.get("error", ""), f"a job that can never fit: {jh}")
vtpy.check(ja["state"] == "succeeded", f"the job queued behind it: {ja}")

rc, _ = d.stop()
vtpy.check(rc == 0, f"final stop: {rc}")

# ---- device failures ------------------------------------------------------------
# VT_TEST_DEVICE_FAULT=N:error makes the backend's N-th sync fail as a failed
# device call does: that job fails, the daemon and the next job go on.
fe = Daemon(a.build, TMP, name="fault-error", env=dict(os.environ, VT_TEST_DEVICE_FAULT="4:error"))
j = fe.cli_json("submit", "--spec", spec_file("fault-error", epochs=3, batch_size=8))["job"]["id"]
j = fe.wait_state(j, ["failed", "succeeded"])
vtpy.check(j["state"] == "failed" and "a device call failed" in j.get("error", ""),
           f"a failed device call: {j}")
j = fe.cli_json("submit", "--spec", spec_file("after-error", epochs=1))["job"]["id"]
vtpy.check(fe.wait_state(j, ["failed", "succeeded"])["state"] == "succeeded",
           "the job after a failed device call")
rc, _ = fe.stop()
vtpy.check(rc == 0, f"stop after a failed device call: {rc}")
# The same in an evaluation through the daemon (its one sync is the first of
# a fresh process): a failed call fails that request alone; one that hid a
# sticky error ends the daemon as in training.
fe.env = dict(os.environ, VT_TEST_DEVICE_FAULT="1:error")
fe.start()
val = os.path.join(DATA, "val")
r = fe.cli("eval", str(j), val, check=False)
vtpy.check(r.returncode != 0 and "a device call failed" in r.stderr,
           f"an evaluation whose device call failed: {r.returncode} {r.stderr!r}")
ev = fe.cli_json("eval", str(j), val)["eval"]
vtpy.check(ev["n"] > 0, f"the evaluation after a failed device call: {ev}")
rc, _ = fe.stop()
vtpy.check(rc == 0, f"stop after an evaluation's failed device call: {rc}")
fe.env = dict(os.environ, VT_TEST_DEVICE_FAULT="1:error-then-lost")
fe.start()
r = fe.cli("eval", str(j), val, check=False)
rc = fe.wait_exit("it went on after an evaluation's failed call that hid a sticky error")
vtpy.check(r.returncode != 0 and "the device context is lost" in r.stderr and rc == 1 and
           "device error in a prediction or evaluation" in fe.log_text(),
           f"a sticky error behind an evaluation: {rc} {r.stderr!r}: {fe.log_text()[-600:]}")
# N:lost makes it a sticky error (the context is unusable): the job it hit
# fails, and the daemon records that and exits with status 1 by itself, for
# the service manager to restart it; the job that ran beside it is not
# failed, and after the restart it runs to the end.
lost_env = dict(os.environ, VT_TEST_DEVICE_FAULT="12:lost")
fl = Daemon(a.build, TMP, name="fault-lost", env=lost_env, extra=["--max-running", "2"])
pair = [fl.cli_json("submit", "--spec", spec_file(f"lost{i}", epochs=4, batch_size=8))["job"]["id"]
        for i in range(2)]
rc = fl.wait_exit("after a sticky device error")
vtpy.check(rc == 1 and "device error in job" in fl.log_text() and
           "the device context is lost" in fl.log_text(),
           f"exit after a sticky device error: {rc}: {fl.log_text()[-600:]}")
fl.env = None
fl.start()
ends = [fl.wait_state(i, ["failed", "succeeded"]) for i in pair]
states = sorted(e["state"] for e in ends)
vtpy.check(states == ["failed", "succeeded"] and
           any("the device context is lost" in e.get("error", "") for e in ends),
           f"the two jobs after a sticky device error and a restart: {ends}")
rc, _ = fl.stop()
vtpy.check(rc == 0, f"final stop after the restart: {rc}")
# A failed call that hid a sticky error ("error-then-lost"): the daemon
# looks (a sync) before going on, and ends as for a sticky error.
fh = Daemon(a.build, TMP, name="fault-hidden",
            env=dict(os.environ, VT_TEST_DEVICE_FAULT="4:error-then-lost"))
j = fh.cli_json("submit", "--spec", spec_file("fault-hidden", epochs=3, batch_size=8))["job"]["id"]
rc = fh.wait_exit("it went on after a failed call that hid a sticky error")
vtpy.check(rc == 1 and "a device call failed; then: test fault" in fh.log_text(),
           f"a hidden sticky error: {rc}: {fh.log_text()[-600:]}")

# ---- kill -9 before a job's first checkpoint ------------------------------------
# (writing one estimated as endlessly slow: none is written) The job starts
# again from the beginning, and its log says so rather than claiming a resume.
nc = Daemon(a.build, TMP, name="no-ckpt", env=dict(os.environ, VT_CHECKPOINT_EST_BPS="1"))
j = nc.cli_json("submit", "--spec", spec_file("no-ckpt", epochs=20))["job"]["id"]
st = after_first_epoch(nc, j)
vtpy.check(st["state"] == "running" and st["epochs_done"] < 20, f"not killed mid-run: {st}")
nc.kill9()
vtpy.check(not os.listdir(os.path.join(nc.state, "checkpoints")), "a checkpoint was written")
nc.env = None
nc.start()
vtpy.check(nc.wait_state(j, ["failed", "succeeded"])["state"] == "succeeded",
           "the job killed before its first checkpoint")
w = nc.cli("watch", str(j)).stdout
vtpy.check("with no checkpoint to resume from; it starts again" in nc.log_text() and
           "resumes from its last checkpoint" not in nc.log_text() and
           "it starts again from the beginning" in w, f"restart without a checkpoint: {w!r}")
rc, _ = nc.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- kill -9 while a job replaces a finished model ------------------------------
# The finished outputs it replaced wait in .vggtune-replaced through the
# kill and the restart (where the job, with no checkpoint, starts again and
# removes only its own unfinished outputs); cancelled then, it puts them
# back, so the finished job's model is there and answers again.
kr = Daemon(a.build, TMP, name="kill-replace")
j0 = kr.cli_json("submit", "--spec", spec_file("kill-replace", epochs=1))["job"]["id"]
vtpy.check(kr.wait_state(j0, ["failed", "succeeded"])["state"] == "succeeded", "the first job")
kr_out = os.path.join(TMP, "out", "kill-replace")
kr_files = ("model.safetensors", "classmap.json", "metrics.jsonl")
kr_sums = {n: sha(os.path.join(kr_out, n)) for n in kr_files}
kr.stop()
kr.env = dict(os.environ, VT_CHECKPOINT_EST_BPS="1")  # no checkpoint: it starts again
kr.start()
j = kr.cli_json("submit", "--spec", spec_file("kill-replace", epochs=50, overwrite=True))
j = j["job"]["id"]
vtpy.check(after_first_epoch(kr, j)["state"] == "running", "the overwriting job")
kr.kill9()
kr.env = None
kr.start()
vtpy.check(after_first_epoch(kr, j)["state"] == "running", "the overwriting job, restarted")
aside = os.path.join(kr_out, ".vggtune-replaced")
vtpy.check(all(sha(os.path.join(aside, n)) == kr_sums[n] for n in kr_files),
           f"the replaced outputs after kill -9 and restart: {os.listdir(kr_out)}")
kr.cli("cancel", str(j))
kr.wait_state(j, ["cancelled"])
image = next(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(DATA, "val")) for f in fs)
vtpy.check(not os.path.exists(aside) and
           all(sha(os.path.join(kr_out, n)) == kr_sums[n] for n in kr_files) and
           kr.cli("predict", str(j0), image, check=False).returncode == 0,
           f"a cancelled overwrite after kill -9: {sorted(os.listdir(kr_out))}")
rc, _ = kr.stop()
vtpy.check(rc == 0, f"stop: {rc}")
# vggtuned run interrupted with no checkpoint to resume from is as cancelled.
fg = subprocess.Popen([VGGTUNED, "run", "--backend", "cpu", "--quiet",
                       spec_file("kill-replace", epochs=50, overwrite=True)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 300
while not (os.path.isdir(aside) and os.path.exists(os.path.join(kr_out, "metrics.jsonl"))) and \
        time.time() < deadline:
    time.sleep(0.05)
vtpy.check(os.path.isdir(aside), f"vggtuned run over a finished model: {os.listdir(kr_out)}")
fg.send_signal(2)
_, err = fg.communicate(timeout=120)
vtpy.check(fg.returncode == 130 and not os.path.exists(aside) and
           all(sha(os.path.join(kr_out, n)) == kr_sums[n] for n in kr_files),
           f"vggtuned run interrupted over a finished model: {fg.returncode} {err[-300:]!r} "
           f"{sorted(os.listdir(kr_out))}")
# ... and interrupted while its first epoch's files are written (held by
# the first one's name): they are written before the earlier job's outputs
# are put back, not over them.  (They landed after: the earlier job's
# metrics.jsonl became this one's.)
fg_holds = os.path.join(TMP, "fg-write-holds")
os.makedirs(fg_holds)
open(os.path.join(fg_holds, "metrics.jsonl"), "w").close()
fg = subprocess.Popen([VGGTUNED, "run", "--backend", "cpu", "--quiet",
                       spec_file("kill-replace", epochs=50, overwrite=True)],
                      env=dict(os.environ, VT_TEST_READ_HOLD=fg_holds),
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
deadline = time.time() + 300
while not os.path.exists(os.path.join(fg_holds, "metrics.jsonl.held")) and \
        fg.poll() is None and time.time() < deadline:
    time.sleep(0.05)
vtpy.check(fg.poll() is None and os.path.isdir(aside),
           f"vggtuned run held writing its first epoch's files: {os.listdir(kr_out)}")
fg.send_signal(2)
time.sleep(2)  # (the time it had to put the earlier outputs back before the write)
os.unlink(os.path.join(fg_holds, "metrics.jsonl"))
_, err = fg.communicate(timeout=120)
vtpy.check(fg.returncode == 130 and not os.path.exists(aside) and
           all(sha(os.path.join(kr_out, n)) == kr_sums[n] for n in kr_files),
           f"vggtuned run interrupted writing over a finished model: {fg.returncode} "
           f"{err[-300:]!r} {sorted(os.listdir(kr_out))}")
# A job started from the very model it replaces (init in the same folder)
# finds it aside once restarted, and resumes; one that fails as it starts
# again (its data gone) puts the replaced outputs back, as any failed job
# does.  (Before, the first failed with "init: no such file" and neither
# put anything back: the earlier model stayed in .vggtune-replaced.)
ri = Daemon(a.build, TMP, name="restart-replace")
ri_data = os.path.join(TMP, "restart-replace-data")
subprocess.run(["cp", "-a", DATA, ri_data], check=True)
ri_spec = job_spec(ri_data, kr_out, head={"dense": [64, 32], "dropout": 0.2}, overwrite=True)
for case in ("init", "data gone"):
    extra = {"init": os.path.join(kr_out, "model.safetensors")} if case == "init" else {}
    path = os.path.join(TMP, "restart-replace.json")
    with open(path, "w") as f:
        json.dump(dict(ri_spec, epochs=50, **extra), f)
    j = ri.cli_json("submit", "--spec", path)["job"]["id"]
    st = after_first_epoch(ri, j)
    vtpy.check(st["state"] == "running" and os.path.isdir(aside), f"{case}: {st['state']}")
    ri.kill9()
    if case == "data gone":
        os.rename(ri_data, ri_data + ".gone")
    ri.start()
    if case == "init":
        st = after_first_epoch(ri, j)
        vtpy.check(st["state"] == "running", f"{case}: restarted: {st.get('error')}")
        ri.cli("cancel", str(j))
    st = ri.wait_state(j, ["cancelled", "failed", "succeeded"])
    vtpy.check(st["state"] == ("cancelled" if case == "init" else "failed") and
               not os.path.exists(aside) and
               all(sha(os.path.join(kr_out, n)) == kr_sums[n] for n in kr_files),
               f"{case}: the replaced outputs after the restarted job ended {st['state']} "
               f"({st.get('error')}): {sorted(os.listdir(kr_out))}")
rc, _ = ri.stop()
vtpy.check(rc == 0, f"stop: {rc}")
# Killed outright, it leaves the finished model aside and its own unfinished
# outputs in place: a job without overwrite still may not replace that model.
fg = subprocess.Popen([VGGTUNED, "run", "--backend", "cpu", "--quiet",
                       spec_file("kill-replace", epochs=50, overwrite=True)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 300
while not (os.path.isdir(aside) and os.path.exists(os.path.join(kr_out, "metrics.jsonl"))) and \
        time.time() < deadline:
    time.sleep(0.05)
fg.kill()
fg.wait()
kr.start()
why = f"holds the model of job {j0}, which finished (kept in .vggtune-replaced"
r = kr.cli("submit", "--spec", spec_file("kill-replace", epochs=1), check=False)
vtpy.check(r.returncode == 2 and why in r.stderr, f"vggtune submit: {r.returncode} {r.stderr!r}")
raw = kr.raw()  # (the daemon checks the same when the job starts)
j = raw.request({"op": "submit", "job": json.load(open(spec_file("kill-replace", epochs=1)))})
raw.close()
st = kr.wait_state(j["job"]["id"], ["failed", "succeeded"])
vtpy.check(st["state"] == "failed" and why in st.get("error", "") and
           all(sha(os.path.join(aside, n)) == kr_sums[n] for n in kr_files),
           f"a job without overwrite over a finished model set aside: {st}")
rc, _ = kr.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- cancelled while queued after a restart --------------------------------------
# Jobs stopped (SIGTERM: checkpointed) and cancelled after the restart
# before they ran again (a job of their user runs first) leave their output
# folders as a cancelled run does: the finished model one replaced put
# back, a folder one made and left empty removed.  (Before, the model
# stayed in .vggtune-replaced beside the job's own unfinished outputs, and
# the empty folder stayed.)
qc = Daemon(a.build, TMP, name="queued-cancel", extra=["--max-running", "3"],
            env=dict(os.environ, VT_CHECKPOINT_EST_BPS="1e15"))
q0 = qc.cli_json("submit", "--spec", spec_file("qc", epochs=1))["job"]["id"]
vtpy.check(qc.wait_state(q0, ["failed", "succeeded"])["state"] == "succeeded", "qc's first job")
qc_out = os.path.join(TMP, "out", "qc")
qc_sums = {n: sha(os.path.join(qc_out, n)) for n in kr_files}
first = qc.cli_json("submit", "--spec", spec_file("qc-first", epochs=50))["job"]["id"]
over = qc.cli_json("submit", "--spec", spec_file("qc", epochs=50, overwrite=True))["job"]["id"]
qc_aside = os.path.join(qc_out, ".vggtune-replaced")
vtpy.check(after_first_epoch(qc, over)["state"] == "running" and os.path.isdir(qc_aside),
           f"the overwriting job: {os.listdir(qc_out)}")
made_out = os.path.join(TMP, "qc-new", "sub")
with open(os.path.join(TMP, "qc-made.json"), "w") as f:  # (a long first epoch)
    json.dump(job_spec(make_data(a.build, os.path.join(TMP, "qc-data"), per_class=150),
                       made_out, epochs=50), f)
made = qc.cli_json("submit", "--spec", os.path.join(TMP, "qc-made.json"))["job"]["id"]
deadline = time.time() + 300
while (p := qc.cli_json("status", str(made))["job"].get("progress") or {}).get("phase") != \
        "training":
    vtpy.before(deadline, f"job {made} did not begin training")
    time.sleep(0.05)
rc, _ = qc.stop()
vtpy.check(rc == 0 and os.listdir(made_out) == [] and
           os.path.exists(os.path.join(qc.state, "checkpoints", f"{made}.safetensors")),
           f"stopped in its first epoch, a checkpoint and an empty folder: {rc} "
           f"{os.listdir(made_out)}")
qc.args[qc.args.index("--max-running") + 1] = "1"
qc.start()
for jid in (over, made):
    vtpy.check(qc.cli_json("status", str(jid))["job"]["state"] == "queued",
               f"job {jid} queued after the restart")
    qc.cli("cancel", str(jid))
    vtpy.check(qc.wait_state(jid, ["cancelled", "failed", "succeeded"])["state"] == "cancelled" and
               not os.path.exists(os.path.join(qc.state, "checkpoints", f"{jid}.safetensors")),
               f"job {jid} cancelled while queued, its checkpoint removed")
vtpy.check(not os.path.exists(qc_aside) and
           all(sha(os.path.join(qc_out, n)) == qc_sums[n] for n in kr_files),
           f"a job cancelled while queued after a restart puts back what it replaced: "
           f"{sorted(os.listdir(qc_out))}")
vtpy.check("put back the earlier job's" in qc.cli("watch", str(over), check=False).stdout,
           "the put-back is in the job's log")
vtpy.check(not os.path.exists(os.path.join(TMP, "qc-new")),
           f"a job cancelled while queued after a restart leaves no empty folder it made: "
           f"{os.listdir(os.path.join(TMP, 'qc-new')) if os.path.exists(os.path.join(TMP, 'qc-new')) else ''}")
qc.cli("cancel", str(first))
rc, _ = qc.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- the data goes away under a running job --------------------------------------
# (random crops: no cache, every epoch reads the images) Moved away after the
# first epoch: the job fails, saying the data has gone, rather than training
# on what is left; the per-image warnings are capped at 10 a pass.  (The
# pass under way when it moves may have read some first: with more than
# half lost it fails there, with fewer it goes on, naming up to 10, and the
# next pass, which reads none, fails naming 10.)
gone_data = os.path.join(TMP, "gone-data")
make_data(a.build, gone_data, per_class=12)
gd = Daemon(a.build, TMP, name="data-gone")
gone_spec = spec_file("data-gone", epochs=50, augment={"crop": 0.2})
with open(gone_spec) as f:
    doc = json.load(f)
doc["data"]["train"] = os.path.join(gone_data, "train")
with open(gone_spec, "w") as f:
    json.dump(doc, f)
j = gd.cli_json("submit", "--spec", gone_spec)["job"]["id"]
vtpy.check(after_first_epoch(gd, j)["state"] == "running", "the job reading its images")
os.rename(os.path.join(gone_data, "train"), os.path.join(gone_data, "moved"))
st = gd.wait_state(j, ["failed", "succeeded"])
w = gd.cli("watch", str(j), check=False).stdout
named = w.count("skipping unreadable training image")
lost = re.search(r"(\d+) of the (\d+) training images could not be read in epoch",
                 st.get("error", ""))
vtpy.check(st["state"] == "failed" and lost and 2 * int(lost[1]) > int(lost[2]) and
           "has the data gone or changed" in st["error"] and 10 <= named <= 20 and
           "more unreadable training images" in w,
           f"a job whose data went away: {st.get('error')} ({named} named) {w[-600:]!r}")
rc, _ = gd.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- another writer finishes in a stopped job's folder ---------------------------
# A job killed after a checkpoint, whose output folder vggtuned run then
# fills with a finished model (with overwrite): the resumed job does not
# replace that model without overwrite, and says why.
rs = Daemon(a.build, TMP, name="resume-over", env=dict(os.environ, VT_CHECKPOINT_EST_BPS="1e15"))
j = rs.cli_json("submit", "--spec", spec_file("resume-over", epochs=20))["job"]["id"]
st = after_first_epoch(rs, j)
vtpy.check(st["state"] == "running" and os.listdir(os.path.join(rs.state, "checkpoints")),
           f"not killed mid-run after a checkpoint: {st}")
rs.kill9()
vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet",
          spec_file("resume-over", epochs=1, overwrite=True)])
fg_model = sha(os.path.join(TMP, "out", "resume-over", "model.safetensors"))
rs.start()
st = rs.wait_state(j, ["failed", "succeeded"])
vtpy.check(st["state"] == "failed" and "holds the model of vggtuned run, which finished there "
           "while this job was stopped" in st.get("error", "") and
           sha(os.path.join(TMP, "out", "resume-over", "model.safetensors")) == fg_model,
           f"a resumed job over another writer's finished model: {st}")
# A failed job's checkpoint goes (nothing resumes it; before, each stayed in
# the state folder for good), and so does one that an older version left.
ckpt = os.path.join(rs.state, "checkpoints", f"{j}.safetensors")
vtpy.check(not os.path.exists(ckpt), "a failed job's checkpoint was kept")
rc, _ = rs.stop()
vtpy.check(rc == 0, f"stop: {rc}")
shutil.copy(os.path.join(TMP, "out", "resume-over", "model.safetensors"), ckpt)
rs.start()
vtpy.check(not os.path.exists(ckpt), "a failed job's checkpoint left by an older version stays")
rc, _ = rs.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- the frozen trunk changes under a stopped job --------------------------------
# A finetune job stopped after an epoch, the daemon restarted with other
# weights (the model vggtuned run wrote above: its block 5 is not the random
# trunk's): block 5 and the head learned from the first trunk's features,
# so the job starts again on the new trunk, saying so (before, it resumed,
# and its model mixed the two trunks).  The same daemon restarted with the
# same weights resumes as ever.  Each job's status names the trunk it ran
# on (before, the daemon's trunk of the day).
other = os.path.join(TMP, "trunk-other.safetensors")
shutil.copy(os.path.join(TMP, "out", "resume-over", "model.safetensors"), other)
tc = Daemon(a.build, TMP, name="trunk-change", env=dict(os.environ, VT_CHECKPOINT_EST_BPS="1e15"))
early = tc.cli_json("submit", "--spec", spec_file("trunk-early", epochs=1))["job"]["id"]
vtpy.check(tc.wait_state(early, ["failed", "succeeded", "cancelled"])["state"] == "succeeded",
           "a one-epoch job before the trunk changes")
j = tc.cli_json("submit", "--spec", spec_file("trunk-change", epochs=6))["job"]["id"]
st = after_first_epoch(tc, j)
vtpy.check(st["state"] == "running", f"not stopped mid-run: {st}")
tc.stop()
tc.args += ["--weights", other]
tc.start()
st = tc.wait_state(j, ["failed", "succeeded", "cancelled"])
log = tc.log_text()
vtpy.check(st["state"] == "succeeded" and len(st["metrics"]) == 6 and
           "the frozen trunk changed since this job's checkpoint" in log and
           "resumed from checkpoint" not in log, f"a job whose trunk changed: {st}")
meta = vtpy.safetensors_meta(os.path.join(TMP, "out", "trunk-change", "model.safetensors"))
vtpy.check(meta.get("weights") == "safetensors:" + other,
           f"the model of a job started again on another trunk names {meta.get('weights')}")
trunks = [tc.cli_json("status", str(k))["job"].get("trunk") for k in (early, j)]
vtpy.check(trunks == ["random (He, seed 0)", "safetensors:" + other],
           f"the trunks jobs ran on, after the daemon's changed: {trunks}")
j = tc.cli_json("submit", "--spec", spec_file("trunk-same", epochs=6))["job"]["id"]
after_first_epoch(tc, j)
tc.stop()
tc.start()
st = tc.wait_state(j, ["failed", "succeeded", "cancelled"])
vtpy.check(st["state"] == "succeeded" and "resumed from checkpoint" in tc.log_text(),
           f"a job restarted on the same trunk should resume: {st}")
# A resumed job cancelled removes the output folders its first run made,
# when empty, as that run would have (before, they stayed).  The epoch's
# files are removed before the restart, as a stop in the first epoch would
# have left the folders (a cancelled job's files stay).
made = os.path.join(TMP, "out", "made-new")
spec = spec_file("made", epochs=30)
with open(spec) as f:
    doc = json.load(f)
doc["output"] = os.path.join(made, "deeper")
with open(spec, "w") as f:
    json.dump(doc, f)
j = tc.cli_json("submit", "--spec", spec)["job"]["id"]
after_first_epoch(tc, j)
tc.stop()
for name in os.listdir(doc["output"]):
    os.unlink(os.path.join(doc["output"], name))
tc.start()
deadline = time.time() + 120
while (tc.cli_json("status", str(j))["job"].get("progress") or {}).get("phase") != "training":
    vtpy.before(deadline, "the resumed job did not train")
    time.sleep(0.05)
tc.cli("cancel", str(j))
st = tc.wait_state(j, ["failed", "succeeded", "cancelled"])
vtpy.check(st["state"] == "cancelled" and not os.path.exists(made),
           f"a resumed job, cancelled, left its output folders: {st['state']} "
           f"{os.path.exists(made)}")
rc, _ = tc.stop()
vtpy.check(rc == 0, f"stop: {rc}")
# ---- the state directory fills while a job runs -------------------------------
# The job finishes, but the store cannot record its epochs nor that it
# succeeded; once space returns the daemon writes the record after all, so
# a restart finds the job finished (before, it stayed "running" in the
# store and the restarted daemon ran it again from the start, removing the
# model it had finished).  Its checkpoints (one after every epoch, all
# larger than the state directory) cannot be written either: the job goes
# on, saying so (before, the first one failed the job).
if os.geteuid() == 0:
    with tmpfs_state_daemon("state-full", "256k") as sf:
        filler = os.path.join(sf.state, "filler")
        j = sf.cli_json("submit", "--spec", spec_file("state-full", epochs=4))["job"]["id"]
        sf.wait_state(j, ["running"])
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=512"], capture_output=True)
        st = sf.wait_state(j, ["failed", "succeeded"])
        vtpy.check(st["state"] == "succeeded", f"a job while the state directory is full: {st}")
        vtpy.check("database or disk is full" in sf.log_text(),
                   "the store never failed: the state directory did not fill in time")
        log = sf.log_text()
        vtpy.check("No space left on device; the job goes on" in log and
                   "it will start again" in log,
                   f"a checkpoint that cannot be written: {log[-800:]}")
        model = sha(os.path.join(TMP, "out", "state-full", "model.safetensors"))
        os.unlink(filler)
        deadline = time.time() + 30
        while True:
            db = sqlite3.connect(f"file:{sf.state}/jobs.db?mode=ro", uri=True)
            (stored,) = db.execute("SELECT state FROM jobs WHERE id = ?", (j,)).fetchone()
            db.close()
            if stored == "succeeded":
                break
            if time.time() > deadline:
                vtpy.fail(f"the store still says {stored!r} 30 s after space returned: "
                          f"{sf.log_text()[-600:]}")
            time.sleep(0.2)
        sf.kill9()
        sf.env = None
        sf.start()
        st = sf.cli_json("status", str(j))["job"]
        vtpy.check(st["state"] == "succeeded" and len(st["metrics"]) == 4 and
                   sha(os.path.join(TMP, "out", "state-full", "model.safetensors")) == model,
                   f"after a restart, a job that finished while the store was full: {st}")
else:
    print("SKIP part: a full state directory needs root (tmpfs mounts)")

# ---- a job ends while the store cannot record it ---------------------------------
# Its checkpoint stays until the store says it ended (before, it was removed
# at once, and a restart meanwhile found the job "running" with no
# checkpoint and trained it again from the start); once the record is
# written, the checkpoint goes.
if os.geteuid() == 0:
    with tmpfs_state_daemon("end-unsaved", "160m") as se:
        filler = os.path.join(se.state, "filler")
        j = se.cli_json("submit", "--spec", spec_file("end-unsaved", epochs=12))["job"]["id"]
        ckpt = os.path.join(se.state, "checkpoints", f"{j}.safetensors")
        deadline = time.time() + 300
        while not os.path.exists(ckpt) and time.time() < deadline:
            time.sleep(0.05)
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k"], capture_output=True)
        st = se.wait_state(j, ["failed", "succeeded"])
        vtpy.check(st["state"] == "succeeded" and "database or disk is full" in se.log_text(),
                   f"a job ending while the store is full: {st}: {se.log_text()[-600:]}")
        vtpy.check(os.path.exists(ckpt), "the checkpoint of a job whose end is not recorded "
                   "was removed")
        os.unlink(filler)
        deadline = time.time() + 30
        while os.path.exists(ckpt) and time.time() < deadline:
            time.sleep(0.2)
        vtpy.check(not os.path.exists(ckpt) and "up to date again" in se.log_text(),
                   f"the checkpoint stayed after the end was recorded: {se.log_text()[-600:]}")
else:
    print("SKIP part: a store that cannot record a job's end needs root (tmpfs mounts)")

# ---- a submission the full state directory cannot record --------------------------
# The user is told that the daemon's state directory is full, for an
# administrator to free, and that the job was not queued; the daemon's log
# names the directory (before, the reply was "job store: insert job:
# database or disk is full", which reads as the user's own disk).  Nothing
# else writes meanwhile, and the store never checkpoints within 256k, so
# the insert must grow its WAL file: the tmpfs refuses it.
if os.geteuid() == 0:
    with tmpfs_state_daemon("submit-full", "256k") as sq:
        filler = os.path.join(sq.state, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=512"], capture_output=True)
        r = sq.cli("submit", "--spec", spec_file("submit-full", epochs=1), check=False)
        vtpy.check(r.returncode == 1 and "the daemon's state directory is full, so the job was "
                   "not queued: an administrator must free space there" in r.stderr and
                   "database or disk is full" not in r.stderr,
                   f"a submission the full store cannot record: {r.stderr!r}")
        vtpy.check(f"the state directory {sq.state} is full (job store: insert job: database "
                   "or disk is full)" in sq.log_text(),
                   f"the log of a submission the full store cannot record: "
                   f"{sq.log_text()[-600:]}")
        vtpy.check(sq.cli_json("list")["jobs"] == [], "a job the store did not record is listed")
        os.unlink(filler)
else:
    print("SKIP part: a submission into a full state directory needs root (tmpfs mounts)")

# ---- checkpoints that cannot be written, epoch after epoch ---------------------
# A failed write is quick, and it used to set the pace of the next try: every
# epoch end built a checkpoint and failed again.  Each failure now doubles
# the wait, from the estimated cost of a checkpoint (here 0.1 ms: the head's
# 35k weights and momenta, 280 kB, at 3 GB/s), so tries are at least 1, 2,
# 4, ... ms apart.  The checkpoints folder takes no file (nr_inodes=1: each
# write fails as it opens); the job, 200 epochs of a few ms each, goes on to
# the end, trying about a dozen times instead of 200 (under 20 for any run
# shorter than 8 minutes).
if os.geteuid() == 0:
    with tmpfs_state_daemon("ckpt-backoff", "nr_inodes=1", folder="checkpoints",
                            est_bps="3e9") as cb:
        n = 200
        j = cb.cli_json("submit", "--spec", spec_file("ckpt-backoff", mode="bottleneck",
                                                      epochs=n))["job"]["id"]
        st = cb.wait_state(j, ["failed", "succeeded"])
        tries = checkpoint_failures(cb, j)
        print(f"{len(tries)} checkpoint tries in {n} epochs")
        vtpy.check(st["state"] == "succeeded" and st["epochs_done"] == n,
                   f"a job whose checkpoints cannot be written: {st}")
        vtpy.check(2 <= len(tries) <= n // 10 and "No space left on device" in tries[0],
                   f"{len(tries)} failed checkpoint writes in {n} epochs: "
                   f"{cb.log_text()[-600:]}")
else:
    print("SKIP part: checkpoints that cannot be written need root (tmpfs mounts)")

# ---- keep_best wrote an epoch's model, then its checkpoint failed --------------
# The older checkpoint is removed: a resume from it could keep that model
# without reaching its epoch again (a GPU run is not bit-identical), and a
# stop now starts the job over, which rewrites the model from the first
# epoch.  Full-batch gradient descent with a small step, validated on the
# training images: val_loss falls every epoch, so every epoch writes
# keep_best's model and then a checkpoint.  Once one is there, the daemon is
# paused between two writes, the test keeps that file under a second name
# (its space stays taken when the daemon removes it) and fills the folder.
if os.geteuid() == 0:
    with tmpfs_state_daemon("best-unckpt", "4m", folder="checkpoints") as kb:
        path = spec_file("best-unckpt", mode="bottleneck", epochs=1000, keep_best=True,
                         batch_size=72)
        doc = json.load(open(path))
        doc["data"]["val"] = doc["data"]["train"]
        doc["head"]["dropout"] = 0.0
        doc["optimizer"] = {"lr": 0.001, "momentum": 0.0}
        with open(path, "w") as f:
            json.dump(doc, f)
        j = kb.cli_json("submit", "--spec", path)["job"]["id"]
        folder = os.path.join(kb.state, "checkpoints")
        ckpt = os.path.join(folder, f"{j}.safetensors")
        held = os.path.join(folder, "held")
        deadline = time.time() + 300
        while not os.path.exists(ckpt):
            if time.time() > deadline:
                vtpy.fail(f"no checkpoint written: {kb.log_text()[-600:]}")
            time.sleep(0.01)
        while True:  # (paused where no checkpoint is half-written)
            pause(kb.proc)
            if not [f for f in os.listdir(folder) if ".tmp." in f]:
                break
            os.kill(kb.proc.pid, signal.SIGCONT)
            time.sleep(0.005)
        os.link(ckpt, held)
        subprocess.run(["dd", "if=/dev/zero", "of=" + os.path.join(folder, "filler"), "bs=4k"],
                       capture_output=True)
        os.kill(kb.proc.pid, signal.SIGCONT)
        deadline = time.time() + 60
        while True:
            failed = checkpoint_failures(kb, j)
            if failed or time.time() > deadline:
                break
            time.sleep(0.02)
        vtpy.check(failed and "it will start again" in failed[0] and not os.path.exists(ckpt),
                   f"after keep_best's model, a checkpoint that failed: the older one "
                   f"{'stays' if os.path.exists(ckpt) else 'went'}: {failed[:1]}")
        rc, _ = kb.stop()
        vtpy.check(rc == 0 and f"job {j}: checkpoint failed" in kb.log_text(),
                   f"a stop whose checkpoint cannot be written: {rc}")
        os.unlink(held)
        os.unlink(os.path.join(folder, "filler"))
        kb.start()
        st = kb.cli_json("status", str(j))["job"]
        vtpy.check(f"job {j} was running when the daemon stopped, with no checkpoint to "
                   "resume from; it starts again" in kb.log_text() and
                   "resumes from its last checkpoint" not in kb.log_text(),
                   f"restarted after a checkpoint removed: {kb.log_text()[-600:]}")
        kb.cli("cancel", str(j))
        kb.wait_state(j, ["cancelled"])
else:
    print("SKIP part: a checkpoint that cannot be written after keep_best's model needs root "
          "(tmpfs mounts)")

# ---- a job's record written again, by epoch -------------------------------------
# A trigger in the store refuses writes, as a full disk does (the same path
# in the daemon).  First epoch 2's alone: the daemon retries every second
# while later epochs are written, and its retries keep those (each one
# rewrote epoch 1 and dropped every row after it).  That leaves a gap; after
# a stop and start, every write of the resumed job is refused until the
# trigger goes, and the metrics are then written again under the epoch they
# are of (they were written by their place in the job's list: with a gap,
# under the wrong epochs).
refuse = ("CREATE TRIGGER refuse BEFORE INSERT ON metrics {} BEGIN "
          "SELECT RAISE(ABORT, 'refused by the test'); END;")
rs = Daemon(a.build, TMP, name="resave")
store_edit(rs.state, refuse.format("WHEN NEW.epoch = 2"))
j = rs.cli_json("submit", "--spec", spec_file("resave", mode="bottleneck", epochs=100000,
                                              batch_size=1))["job"]["id"]
epochs_done(rs, j, 4)
rc, _ = rs.stop()  # (with a last try as it stops)
stored = [e for (e,) in store_rows(rs.state, "SELECT epoch FROM metrics WHERE job = ?", j)]
vtpy.check(rc == 0 and 2 not in stored and {1, 3, 4} <= set(stored),
           f"stored epochs while epoch 2 is refused: {stored[:8]}")
store_edit(rs.state, "DROP TRIGGER refuse;" + refuse.format(""))
((done,),) = store_rows(rs.state, "SELECT epochs_done FROM jobs WHERE id = ?", j)
rs.start()
epochs_done(rs, j, done + 2)
store_edit(rs.state, "DROP TRIGGER refuse;")
wait_resaved(rs, j)
rs.cli("cancel", str(j))
rs.wait_state(j, ["cancelled"])
rows = store_rows(rs.state, "SELECT epoch, body FROM metrics WHERE job = ? ORDER BY epoch", j)
wrong = [(e, json.loads(b)["epoch"]) for e, b in rows if json.loads(b)["epoch"] != e]
vtpy.check(rows and not wrong and [e for e, _ in rows][:2] == [1, 3] and
           rows[-1][0] >= done + 2,
           f"metrics written again under the wrong epochs (row, its own): {wrong[:4]}; rows "
           f"{[e for e, _ in rows][:8]}")

# ---- a job's row deleted by hand while its record is behind -----------------------
# Writing the record again finds no job (VT_ENOTFOUND): said once, and the
# job, which runs on, is not written again (before: tried every second,
# silently, for the daemon's life); the daemon and its next job go on.
store_edit(rs.state, refuse.format(""))
gone = rs.cli_json("submit", "--spec", spec_file("gone", mode="bottleneck", epochs=100000,
                                                 batch_size=1))["job"]["id"]
epochs_done(rs, gone, 2)
store_edit(rs.state, f"BEGIN; DELETE FROM events WHERE job = {gone}; "
           f"DELETE FROM metrics WHERE job = {gone}; DELETE FROM jobs WHERE id = {gone}; "
           "DROP TRIGGER refuse; COMMIT;")
said = (f"job {gone}: job store: record metrics: the job is not in the store; "
        "its record is not retried")
deadline = time.time() + 10
while said not in rs.log_text():
    if time.time() > deadline:
        vtpy.fail(f"a record whose row is gone: nothing said: {rs.log_text()[-600:]}")
    time.sleep(0.1)
time.sleep(2.2)  # (epochs and the retries of two seconds)
rs.cli("cancel", str(gone))
rs.wait_state(gone, ["cancelled"])
after = rs.cli_json("submit", "--spec", spec_file("after-gone", mode="bottleneck",
                                                  epochs=1))["job"]["id"]
rs.wait_state(after, ["succeeded"])
rc, _ = rs.stop()
log = [line for line in rs.log_text().splitlines() if f"job {gone}: " in line]
vtpy.check(rc == 0 and rs.log_text().count(said) == 1 and
           f"job {gone}: its last state" not in rs.log_text(),
           f"a record whose row is gone: {log}")
vtpy.check(store_rows(rs.state, "SELECT state FROM jobs WHERE id = ?", after) ==
           [("succeeded",)], "the job after a deleted row")

# ---- a job's log events that the store refuses -----------------------------------
# They wait with its record and are written with it once the store takes
# writes (before, they were dropped: the warnings a full state directory
# causes, that checkpoints could not be written, were gone from the job's
# log); a watch meanwhile shows them after the stored ones.
store_edit(rs.state, "CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN "
           "SELECT RAISE(ABORT, 'refused by the test'); END;")
rs.start()
j = rs.cli_json("submit", "--spec", spec_file("events-refused", mode="bottleneck",
                                              epochs=1))["job"]["id"]
rs.wait_state(j, ["succeeded"])
said = "events-refused: 72 training images"
watched = rs.cli("watch", str(j)).stdout
vtpy.check(said in watched, f"a watch while the store refuses the job's log: {watched!r}")
store_edit(rs.state, "DROP TRIGGER refuse;")
wait_resaved(rs, j)
rs.kill9()
rs.start()
watched = rs.cli("watch", str(j)).stdout
vtpy.check(watched.count(said) == 1,
           f"a job's log the store refused, after a restart: {watched!r}")
rc, _ = rs.stop()
vtpy.check(rc == 0, f"stop: {rc}")

# ---- clients take every descriptor the daemon may open -------------------------
# Under a low RLIMIT_NOFILE, max-clients is lowered so that a descriptor
# reserve stays for the store and the jobs (before, a flood of connections
# took the last ones: the running job skipped its images as unreadable and
# failed on its next output file); connections over it are refused at once.
# A limit that leaves no room for a client stops the daemon at the start,
# saying so.
low = Daemon(a.build, TMP, name="few-fds", start=False)
low.args = ["prlimit", "--nofile=576:576", "--", *low.args]  # (512 kept for stand-ins)
low.start()
vtpy.check("leaves room for 28 clients at once" in low.log_text(),
           f"no word on the lowered max-clients: {low.log_text()[-600:]}")
j = low.cli_json("submit", "--spec", spec_file("few-fds", epochs=3))["job"]["id"]
low.wait_state(j, ["running"])
flood = []
for _ in range(80):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(low.socket)
    except OSError:
        s.close()
        break
    flood.append(s)
try:
    refused = flood[-1].recv(4096).decode()
except OSError as e:
    refused = repr(e)
deadline = time.time() + 300
while True:
    db = sqlite3.connect(f"file:{low.state}/jobs.db?mode=ro", uri=True)
    (stored,) = db.execute("SELECT state FROM jobs WHERE id = ?", (j,)).fetchone()
    db.close()
    if stored in ("failed", "succeeded") or time.time() > deadline:
        break
    time.sleep(0.2)
for s in flood:
    s.close()
deadline = time.time() + 30  # (until the daemon has seen them close)
while True:
    try:
        low.raw().close()
        break
    except (OSError, AssertionError):
        if time.time() > deadline:
            raise
        time.sleep(0.1)
st = low.wait_state(j, ["failed", "succeeded"])
vtpy.check(len(flood) == 80 and "too many connections" in refused,
           f"{len(flood)} connections; the last one got {refused!r}")
vtpy.check(st["state"] == "succeeded" and "Too many open files" not in low.log_text() and
           "skipping unreadable" not in low.log_text(),
           f"a job while clients hold every connection allowed: {st}: {low.log_text()[-600:]}")
rc, _ = low.stop()
vtpy.check(rc == 0, f"stop: {rc}")
try:
    r = subprocess.run(["prlimit", "--nofile=32:32", "--", *low.args[3:]], capture_output=True,
                       text=True, timeout=20)
    rc, said = r.returncode, r.stdout + r.stderr
except subprocess.TimeoutExpired:
    rc, said = None, "(it started and kept running)"
vtpy.check(rc not in (0, None) and "the open-file limit (32) is too low" in said,
           f"a limit too low for one client: exit {rc}: {said}")

# ---- temporary files of writes that a kill -9 cut short -------------------------
# Outputs and checkpoints are written to ".NAME.tmp.PID.N" and renamed; a
# daemon killed mid-write leaves that file, as large as the model or the
# checkpoint, and each kill one more.  The next start removes those in the
# checkpoints folder, and a job starting or resuming those of its outputs
# whose writer has ended; a live writer's and other files stay.
gone = subprocess.Popen(["true"])
gone.wait()  # (a process that has ended: its temporary files are stale)
lo = Daemon(a.build, TMP, name="leftovers", start=False)
os.makedirs(os.path.join(lo.state, "checkpoints"))
stale_ck = os.path.join(lo.state, "checkpoints", f".7.safetensors.tmp.{gone.pid}.3")
lo_out = os.path.join(TMP, "out", "leftovers")
os.makedirs(lo_out)
stale = os.path.join(lo_out, f".model.safetensors.tmp.{gone.pid}.5")
live = os.path.join(lo_out, f".metrics.jsonl.tmp.{os.getpid()}.1")
mine = os.path.join(lo_out, ".model.safetensors.tmp.notes")
for path in (stale_ck, stale, live, mine):
    with open(path, "wb") as f:
        f.write(b"\0" * 65536)
lo.start()
vtpy.check(not os.path.exists(stale_ck) and "removed 1 unfinished checkpoint file" in
           lo.log_text(), f"a killed daemon's unfinished checkpoint: {lo.log_text()[-600:]}")
j = lo.cli_json("submit", "--spec", spec_file("leftovers", epochs=1))["job"]["id"]
vtpy.check(lo.wait_state(j, ["failed", "succeeded"])["state"] == "succeeded", "leftovers job")
vtpy.check(not os.path.exists(stale) and os.path.exists(live) and os.path.exists(mine),
           f"temporary files in the output after the job: {sorted(os.listdir(lo_out))}")
vtpy.check("removed 1 unfinished temporary file" in lo.cli("watch", str(j)).stdout,
           "the job's log does not say what it removed")
rc, _ = lo.stop()
vtpy.check(rc == 0, f"stop: {rc}")

vtpy.done()

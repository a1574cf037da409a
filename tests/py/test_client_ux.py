#!/usr/bin/env python3
"""What the client shows and sends, end to end, on the CPU backend.

Starts the real vggtuned on a temporary socket and drives it with the real
vggtune client, for the things a user test found wrong:
  a symbolic link named on the command line (predict IMAGE, eval DIR) is
  followed; submit --dry-run shows plain paths ('..' resolved); a --spec
  whose data is not an object is told so; an early-stopped job says so in
  list and status (its ETA drops to the save once the stop is decided),
  and a keep_best job that has ended keeps its model without 'so far';
  list pads non-ASCII names by display width; Ctrl-C during watch and
  submit --watch exits 130, as documented; PROTOCOL.md and vggtune --help
  give the socket search order the code follows; an --out too long for the
  job's files, or with a name too long for the file system, is refused
  naming the flag and the limit.  As root
  (with setpriv) also: another user's running job as a non-admin sees it,
  and the 'permission denied' hint for the socket's real group and mode.
"""
import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402
from vtdaemon import Daemon, Raw, job_spec, make_data  # noqa: E402

a = vtpy.args()
TMP = vtpy.tmpdir(a.keep)
os.chmod(TMP, 0o755)  # another user (nobody) reaches the socket below it
DATA = make_data(a.build, os.path.join(TMP, "data"), per_class=8, val=4)
AS_ROOT = os.geteuid() == 0 and shutil.which("setpriv") is not None
try:
    NOBODY = pwd.getpwnam("nobody")
    NOGROUP = grp.getgrgid(NOBODY.pw_gid).gr_name  # nogroup, or nobody
except KeyError:
    AS_ROOT = False
# As root the socket is given to nobody's group, so that nobody may connect.
d = Daemon(a.build, TMP, extra=["--socket-group", NOGROUP] if AS_ROOT else [])


def write_spec(tag, **extra):
    spec = job_spec(DATA, os.path.join(TMP, "out", tag), **extra)
    path = os.path.join(TMP, tag + ".json")
    with open(path, "w") as f:
        json.dump(spec, f, ensure_ascii=False)
    os.chmod(path, 0o644)
    return path


def submit(tag, **extra):
    return d.cli_json("submit", "--spec", write_spec(tag, **extra))["job"]["id"]


def cli_in(cwd, *args):
    """The client run from cwd (relative paths)."""
    return vtpy.run([d.client, "--socket", d.socket, *args], check=False, cwd=cwd)


def as_nobody(*args):
    """The client run as user nobody, with nobody's groups."""
    return vtpy.run(["setpriv", "--reuid=nobody", f"--regid={NOGROUP}", "--init-groups",
                     d.client, "--socket", d.socket, *args], check=False)


def columns(text):
    """Display columns of text, as a terminal shows it."""
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


# ---- a finished job: keep_best, stopped early ------------------------------------
# min_delta so large that no epoch after the first improves: with patience 1
# the job stops after epoch 2 of 30, keeping epoch 1.
# Watched from its submission: once the stop is decided the ETA is only the
# save (no more of the 30 epochs), while epoch 1's files are saved it is
# the epochs after it.
wr = Raw(d.socket)
early = wr.request({"op": "submit", "job": json.load(open(write_spec(
    "early", epochs=30, keep_best=True,
    early_stopping={"patience": 1, "min_delta": 1e6})))})["job"]["id"]
wr.send({"op": "watch", "job": early})
saving = []
while (m := wr.read()) is not None and m.get("event") != "end":
    if m.get("event") == "progress" and m["progress"]["phase"] == "saving":
        saving.append(m["progress"])
wr.close()
vtpy.check([p["epoch"] for p in saving] == [1, 2, 2] and saving[0]["eta_s"] > 0 and
           saving[1]["eta_s"] == saving[2]["eta_s"] == 0,
           f"saving an early-stopped job's epochs (its ETA): {saving}")
job = d.wait_state(early, ["succeeded", "failed"], timeout=300)
vtpy.check(job["state"] == "succeeded" and job["epochs_done"] == 2,
           f"the early-stopping job should succeed after 2 epochs: {job}")

# ---- the ETA of many short epochs ------------------------------------------------
# An epoch from cached features takes about a millisecond here; writing its
# files, longer.  The ETA counts the mean time from one epoch's start to the
# next (before, only the passes: 1/25 of the time that was left).  It is
# checked against the pace of epochs 2 to 29 by the daemon's own clock (the
# "time" of their metrics), so that neither a machine busier after them (CI
# runs tests side by side) nor this watch's delays count.
wr = Raw(d.socket)
many = wr.request({"op": "submit", "job": json.load(open(write_spec(
    "many", mode="bottleneck", epochs=300)))})["job"]["id"]
wr.send({"op": "watch", "job": many})
eta30, ended = None, {}  # (ended: epoch -> its metrics' time)
while (m := wr.read()) is not None and m.get("event") != "end":
    if m.get("event") == "progress" and m["progress"]["epoch"] == 30 and eta30 is None:
        eta30 = m["progress"].get("eta_s")
    if m.get("event") == "epoch":
        ended[m["metrics"]["epoch"]] = m["metrics"]["time"]
wr.close()
vtpy.check(eta30 is not None and 1 in ended and 29 in ended,
           f"a watch sees epoch 30 begin and epochs 1 and 29 end: {eta30}, {sorted(ended)[:30]}")
pace = (ended[29] - ended[1]) / 28
vtpy.check(pace * 271 / 3 <= eta30 <= pace * 271 * 3,
           f"the ETA at epoch 30 of 300 short ones: {eta30:.2f} s, at the pace of epochs 2 "
           f"to 29 {pace * 271:.2f} s")
r = d.cli("list")
row = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{early} ")]
vtpy.check(row and "2/30 (stopped early)" in row[0], f"list of an early-stopped job: {row}")
r = d.cli("status", str(early))
vtpy.check("epochs     2 of 30 done: stopped early, val_loss did not improve for 1 epoch "
           "(early_stopping.patience)" in r.stdout, f"status of an early-stopped job: {r.stdout}")
vtpy.check("model      epoch 1's (keep_best: lowest val_loss)\n" in r.stdout,
           f"an ended keep_best job keeps its model without 'so far': {r.stdout}")

# ---- a symbolic link named on the command line is followed ----------------------
cls = sorted(os.listdir(os.path.join(DATA, "val")))[0]
img = os.path.join(DATA, "val", cls, sorted(os.listdir(os.path.join(DATA, "val", cls)))[0])
links = os.path.join(TMP, "links")
os.makedirs(links)
os.symlink(img, os.path.join(links, "link.png"))
os.symlink(os.path.join(DATA, "val"), os.path.join(links, "valdir"))
r = cli_in(links, "predict", str(early), "link.png", "missing.png")
vtpy.check("symbolic link" not in r.stdout + r.stderr,
           f"predict refused a link the user named: {r.stdout!r} {r.stderr!r}")
vtpy.check(re.search(r"^link\.png:  \S+ \d\.\d{4}", r.stdout, re.M),
           f"predict should classify link.png: {r.stdout!r}")
vtpy.check("missing.png:  error: " in r.stdout and r.returncode == 1,
           f"a missing image is still the daemon's error to report: {r.stdout!r}")
r = cli_in(links, "eval", str(early), "valdir")
vtpy.check(r.returncode == 0 and r.stdout.startswith("images 12 "),
           f"eval of a linked folder: {r.returncode} {r.stdout!r} {r.stderr!r}")

# ---- plain paths in submit --dry-run ---------------------------------------------
cwdtest = os.path.join(TMP, "x", "cwdtest")
os.makedirs(cwdtest)
r = cli_in(cwdtest, "--json", "submit", "--data", "../../data/train", "--dry-run")
doc = json.loads(r.stdout) if r.returncode == 0 else {}
vtpy.check(doc.get("data", {}).get("train") == os.path.join(TMP, "data", "train"),
           f"--dry-run should show the plain path: {r.stdout!r}")

# ---- a --spec whose data is not an object -------------------------------------
bad = os.path.join(TMP, "bad.json")
with open(bad, "w") as f:
    json.dump({"data": "d3/train", "epochs": 1}, f)
r = d.cli("submit", "--spec", bad, check=False)
vtpy.check(r.returncode == 2 and "data must be an object" in r.stderr
           and "--data DIR is required" not in r.stderr, f"data as a string: {r.stderr!r}")

# ---- an --out path too long for the job's files ---------------------------------
# (its model's path would pass PATH_MAX, or a name NAME_MAX: the field, the
# length, the limit, advice)
long_out = os.path.join(TMP, "long")
while len(long_out) < 4075:
    long_out += "/" + "d" * 200
long_out = long_out[:4074] + "e"  # (not ending in a slash)
r = d.cli("submit", "--data", os.path.join(TMP, "data", "train"), "--out", long_out,
          check=False)
vtpy.check(r.returncode == 2 and "output is 4075 bytes long, over the 4044 bytes an output "
           "directory may have" in r.stderr and "give a shorter directory (--out)" in r.stderr,
           f"--out too long: {r.stderr!r}")
r = d.cli("submit", "--data", os.path.join(TMP, "data", "train"), "--out",
          os.path.join(TMP, "x" * 256, "o"), check=False)
vtpy.check(r.returncode == 2 and "output has a name longer than the file system allows: "
           "xxxx" in r.stderr and "is 256 bytes, at most 255; shorten that name (--out)"
           in r.stderr, f"--out with a 256-byte name: {r.stderr!r}")

# ---- list pads by display width ----------------------------------------------
names = ["données", "çercles 円", "карé"]
ids = [submit(f"w{i}", name=n, epochs=1) for i, n in enumerate(names)]
for i in ids:
    d.wait_state(i, ["succeeded", "failed"], timeout=300)
lines = d.cli("list").stdout.splitlines()
starts = set()
for i, n in zip(ids, names):
    row = [ln for ln in lines if ln.startswith(f"{i} ")]
    if vtpy.check(row and f"{n}  " in row[0], f"list row of {n}: {row}"):
        starts.add(columns(row[0][:row[0].index("  succeeded")]))
vtpy.check(len(starts) == 1, f"the STATE column should start at one display column: {lines}")

# ---- exit status 130 on Ctrl-C, and its documentation ----------------------
r = d.cli("--help")
vtpy.check("130 Ctrl-C stopped" in r.stdout, "vggtune --help should give exit status 130")
longjob = submit("long", epochs=500)
d.wait_state(longjob, ["running"], timeout=120)
p = subprocess.Popen([d.client, "--socket", d.socket, "watch", str(longjob)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
first = p.stdout.readline()  # the watch has begun
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=30)
vtpy.check(p.returncode == 130, f"Ctrl-C of watch: exit {p.returncode}, {first!r} {err!r}")
vtpy.check("stopped watching" in err, f"watch's Ctrl-C message: {err!r}")
p = subprocess.Popen([d.client, "--socket", d.socket, "submit", "--spec",
                      write_spec("long2", epochs=500), "--watch"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
first = p.stdout.readline()  # submitted job N
second = p.stdout.readline()  # the watch's first line: it is watching now
p.send_signal(signal.SIGINT)
out, err = p.communicate(timeout=30)
vtpy.check(p.returncode == 130, f"Ctrl-C of submit --watch: exit {p.returncode}, "
           f"{first!r} {second!r} {err!r}")
long2 = int(re.search(r"submitted job (\d+)", first).group(1)) if "submitted" in first else 0

# ---- as another user (root only) ---------------------------------------------
if not AS_ROOT:
    print("SKIP part: other users (needs root and setpriv)")
else:
    # another user's running job, with progress the viewer may not see
    deadline = time.time() + 60
    while time.time() < deadline and "progress" not in d.cli_json("status",
                                                                   str(longjob))["job"]:
        time.sleep(0.2)
    r = as_nobody("list")
    row = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{longjob} ")]
    vtpy.check(row and "running" in row[0] and "starting" not in row[0],
               f"another user's running job, as a non-admin sees it: {r.stdout!r}")

    # the socket's permission hint names what is so
    st = os.stat(d.socket)
    try:
        os.chown(d.socket, -1, 0)
        r = as_nobody("list")
        vtpy.check(r.returncode == 3 and "its group is root" in r.stderr
                   and "'vggtune' group" not in r.stderr, f"a root-group socket: {r.stderr!r}")
        os.chown(d.socket, -1, st.st_gid)
        os.chmod(d.socket, 0o600)
        r = as_nobody("list")
        vtpy.check(r.returncode == 3 and f"you are in its group '{NOGROUP}', but its mode "
                   "(0600)" in r.stderr, f"a socket closed to its group: {r.stderr!r}")
        os.chmod(d.socket, 0o660)
        other = [g for g in grp.getgrall() if g.gr_gid not in (0, NOBODY.pw_gid)
                 and "nobody" not in g.gr_mem][0]
        os.chown(d.socket, -1, other.gr_gid)
        r = as_nobody("list")
        vtpy.check(r.returncode == 3 and f"add you to the '{other.gr_name}' group" in r.stderr,
                   f"a socket of another group: {r.stderr!r}")
    finally:
        os.chown(d.socket, -1, st.st_gid)
        os.chmod(d.socket, st.st_mode & 0o777)

for j in (longjob, long2):
    if j:
        d.cli("cancel", str(j), check=False)

# ---- the socket search order: one story in the protocol and the help --------------
with open(os.path.join(a.source, "proto", "PROTOCOL.md")) as f:
    transport = f.read().split("## Transport", 1)[1].split("\n## ", 1)[0]
help_text = d.cli("--help").stdout
order = ["$VGGTUNE_SOCKET", "$XDG_RUNTIME_DIR/vggtune.sock", "/tmp/vggtune-UID.sock",
         "/run/vggtune/vggtune.sock"]
for where, text in (("PROTOCOL.md", transport), ("vggtune --help", help_text)):
    at = [text.find(s) for s in order]
    vtpy.check(all(x >= 0 for x in at) and at == sorted(at),
               f"{where} should give the socket order {order}: found at {at}")

rc, _ = d.stop()
vtpy.check(rc == 0, f"vggtuned exit status {rc}")
vtpy.done()

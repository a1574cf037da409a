#!/usr/bin/env python3
"""The service side: unit files, socket activation, the notify protocol.

  systemd-analyze verify passes on the units (as configured by CMake).
  Socket activation: systemd-socket-activate passes the listening socket
  (LISTEN_FDS) and the client talks to the daemon through it.
  Notify: with a test NOTIFY_SOCKET the daemon sends READY=1 once ready,
  STATUS= lines, WATCHDOG=1 when WATCHDOG_USEC is set, STOPPING=1 on SIGTERM.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402
from vtdaemon import Raw, job_spec, make_data  # noqa: E402

a = vtpy.args()
TMP = vtpy.tmpdir(a.keep)
VGGTUNED = os.path.join(a.build, "daemon", "vggtuned")
CLIENT = os.path.join(a.build, "client", "vggtune")

# ---- unit files ----------------------------------------------------------------
if shutil.which("systemd-analyze"):
    units = os.path.join(TMP, "units")
    os.makedirs(units)
    with open(os.path.join(a.build, "systemd", "vggtuned.service")) as f:
        text = f.read()
    exe = [l.split("=", 1)[1].split()[0] for l in text.splitlines() if l.startswith("ExecStart=")]
    vtpy.check(exe and exe[0].endswith("/vggtuned"), f"ExecStart: {exe}")
    with open(os.path.join(units, "vggtuned.service"), "w") as f:
        f.write(text.replace(exe[0], VGGTUNED))
    shutil.copy(os.path.join(a.source, "systemd", "vggtuned.socket"), units)
    r = vtpy.run(["systemd-analyze", "verify", "vggtuned.service", "vggtuned.socket"],
                 check=False, cwd=units)
    vtpy.check(r.returncode == 0, "systemd-analyze verify failed")
    for must in ("Type=notify", "WatchdogSec=", "User=vggtune", "DeviceAllow=char-nvidia-uvm",
                 "Restart=on-failure"):
        vtpy.check(must in text, f"vggtuned.service lacks {must}")
else:
    print("SKIP part: systemd-analyze is missing")

# ---- cmake --install --prefix: everything under the prefix, the unit naming it --------
prefix = os.path.join(TMP, "prefix")
r = vtpy.run(["cmake", "--install", a.build, "--prefix", prefix], check=False)
placed = [l.split(": ", 1)[1] for l in r.stdout.splitlines() if l.startswith("-- Installing: ")]
vtpy.check(r.returncode == 0 and placed and all(x.startswith(prefix + "/") for x in placed),
           f"cmake --install --prefix wrote outside the prefix: {r.returncode} {placed}")
unit = os.path.join(prefix, "lib", "systemd", "system", "vggtuned.service")
text = open(unit).read() if os.path.exists(unit) else ""
cmd = [l.split("=", 1)[1].split() for l in text.splitlines() if l.startswith("ExecStart=")]
vtpy.check(cmd and cmd[0][0] == os.path.join(prefix, "bin", "vggtuned") and
           os.access(cmd[0][0], os.X_OK) and cmd[0][1:] == ["--config", os.path.join(
               prefix, "etc", "vggtune", "vggtuned.conf")] and os.path.exists(cmd[0][2]),
           f"the installed unit should run the installed daemon with the installed config: {cmd}")
if shutil.which("systemd-analyze") and text:
    r = vtpy.run(["systemd-analyze", "verify", "vggtuned.service", "vggtuned.socket"],
                 check=False, cwd=os.path.dirname(unit))
    vtpy.check(r.returncode == 0, f"systemd-analyze verify of the installed units: {r.stderr}")
# An install over an edited configuration keeps the edits (the new
# example goes beside it).
conf = os.path.join(prefix, "etc", "vggtune", "vggtuned.conf")
with open(conf, "a") as f:
    f.write("max-queued = 7\n")
r = vtpy.run(["cmake", "--install", a.build, "--prefix", prefix], check=False)
vtpy.check(r.returncode == 0 and open(conf).read().endswith("max-queued = 7\n") and
           os.path.exists(conf + ".example") and "Keeping: " + conf in r.stdout,
           f"a reinstall replaced the edited configuration: {r.stdout[-400:]}")

# ---- the settings file ----------------------------------------------------------------
# Mistakes name the file, the line and the setting; values may be quoted and
# lines carry comments, as in the example file.
conf = os.path.join(TMP, "c.conf")
for body, want in (("backend = cpu\nmax-queue = 3\n", "c.conf:2: unknown setting 'max-queue'"),
                   ("max-queued = many\n", "max-queued must be an integer"),
                   ("backend\n", "c.conf:1: expected 'key = value'")):
    with open(conf, "w") as f:
        f.write(body)
    r = vtpy.run([VGGTUNED, "--config", conf], check=False, timeout=30)
    vtpy.check(r.returncode == 2 and want in r.stderr, f"config {body!r}: {r.stderr!r}")
# A settings file that cannot be read is an error, not an empty file: a
# directory given as --config opens, and only its first read fails.
# (its own socket and state: a daemon that starts must not touch the system's)
r = vtpy.run([VGGTUNED, "--config", TMP, "--socket", os.path.join(TMP, "dir.sock"),
              "--state-dir", os.path.join(TMP, "dir-state"), "--backend", "cpu"],
             check=False, timeout=30)
vtpy.check(r.returncode == 2 and f"cannot read config file {TMP}: Is a directory" in r.stderr,
           f"a directory as --config: {r.returncode} {r.stderr!r}")
# An empty path is a mistake, said as such (an empty socket was bound, and
# the start failed on "cannot chmod : No such file or directory").
with open(conf, "w") as f:
    f.write("socket =\n")
r = vtpy.run([VGGTUNED, "--config", conf, "--state-dir", os.path.join(TMP, "empty-state"),
              "--backend", "cpu"], check=False, timeout=60)
vtpy.check(r.returncode == 2 and "c.conf:1: socket must not be empty" in r.stderr,
           f"an empty socket setting: {r.returncode} {r.stderr!r}")
# Command-line mistakes are named as such.
for args, want in ((["--socket"], "option --socket needs a value"),
                   (["--admin-group", "no-such-group-x"], "admin-group: no group 'no-such-group-x'"),
                   (["--sockets", "x"], "unknown option --sockets"),
                   (["--max-running", "0"], "max-running must be")):
    r = vtpy.run([VGGTUNED, *args], check=False, timeout=30)
    vtpy.check(r.returncode == 2 and want in r.stderr, f"vggtuned {args}: {r.stderr!r}")
qsock = os.path.join(TMP, "bob's.sock")  # an apostrophe in a plain value quotes nothing
with open(conf, "w") as f:
    f.write(f'# quoted values\nsocket = {qsock}   # a comment\n'
            f'# weights = "/models/vgg16.h5"  (commented out, quotes and all)\n'
            f"state-dir = '{os.path.join(TMP, 'q#state')}'  # a '#' in quotes is the value's\n"
            f"backend = cpu\nlog-level = info  # Bob's comment, an apostrophe in it\n")
p = subprocess.Popen([VGGTUNED, "--config", conf], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
deadline = time.time() + 60
while time.time() < deadline and not os.path.exists(qsock) and p.poll() is None:
    time.sleep(0.1)
vtpy.check(os.path.exists(qsock) and os.path.isdir(os.path.join(TMP, "q#state")),
           "a settings file with quoted values and commented-out lines should start the "
           "daemon, its quoted paths used without their quotes")
p.send_signal(signal.SIGTERM)
p.wait(timeout=60)

# ---- log lines for the journal ---------------------------------------------------------
# The "<N>" level prefixes go to the journal only: JOURNAL_STREAM names its
# stream ("DEVICE:INODE"), and a process whose stderr is something else
# (a file, a terminal) but that inherited the variable writes plain lines.
# (A start that fails at once, on a state directory that is a file.)
for journal in (True, False):
    with open(os.path.join(TMP, "journal.log"), "w+") as f:
        st = os.fstat(f.fileno())
        env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino + (0 if journal else 1)}")
        rc = subprocess.run([VGGTUNED, "--config", "none", "--backend", "cpu",
                             "--socket", os.path.join(TMP, "j.sock"), "--state-dir", conf],
                            stdout=subprocess.DEVNULL, stderr=f, env=env, timeout=60).returncode
        f.seek(0)
        said = f.read()
    want = "<3>state directory: " if journal else "vggtuned: error: state directory: "
    vtpy.check(rc == 1 and said.startswith(want),
               f"JOURNAL_STREAM {'of' if journal else 'not of'} stderr: {rc} {said!r}")

# ---- socket activation ------------------------------------------------------------
if shutil.which("systemd-socket-activate"):
    sock = os.path.join(TMP, "act.sock")
    state = os.path.join(TMP, "act-state")
    log = open(os.path.join(TMP, "act.log"), "w")
    p = subprocess.Popen(["systemd-socket-activate", "-l", sock, VGGTUNED, "--state-dir",
                          state, "--backend", "cpu", "--socket", os.path.join(TMP, "unused.sock")],
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            raw = Raw(sock, timeout=5)
            ready = raw.request({"op": "status"})["daemon"]["ready"]
            raw.close()
            if ready:
                break
        except OSError:
            pass
        time.sleep(0.1)
    r = vtpy.run([CLIENT, "--socket", sock, "status"], check=False)
    vtpy.check(r.returncode == 0 and "cpu" in r.stdout, f"client through activation: {r.stdout!r}")
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    log.close()
    text = open(os.path.join(TMP, "act.log")).read()
    vtpy.check("using the socket passed by systemd" in text, f"activation log: {text}")
    # The journal names the socket clients reach, not the --socket it replaced.
    said = [l for l in text.splitlines() if l.startswith("vggtuned:")]
    vtpy.check(f"socket {sock}\n" in text and
               not any("unused.sock" in l for l in said),
               f"the log should name the passed socket {sock}: {text}")
    vtpy.check(not os.path.exists(os.path.join(TMP, "unused.sock")),
               "with socket activation the daemon must not create its own socket")
    # A passed socket our clients cannot reach (ListenStream= naming a TCP
    # port) is refused: the daemon used to bind its own socket beside it,
    # and systemd's was never answered.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tcp = subprocess.Popen(["systemd-socket-activate", "-l", f"127.0.0.1:{port}", VGGTUNED,
                            "--state-dir", os.path.join(TMP, "tcp-state"), "--backend", "cpu",
                            "--socket", os.path.join(TMP, "own.sock")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:  # (it starts the daemon on the first connection)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        out, _ = tcp.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # (it ran on beside the passed socket)
        tcp.kill()
        out = tcp.communicate()[0] + "\n(still running after 60 s)"
    vtpy.check(tcp.returncode != 0 and "the socket systemd passed is not a listening Unix "
               "stream socket" in out and not os.path.exists(os.path.join(TMP, "own.sock")),
               f"a TCP socket passed by systemd: exit {tcp.returncode}: {out}")
else:
    print("SKIP part: systemd-socket-activate is missing")

# ---- notify protocol ------------------------------------------------------------------
nsock = os.path.join(TMP, "notify.sock")
ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ns.bind(nsock)
ns.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=nsock, WATCHDOG_USEC="1000000")
dsock = os.path.join(TMP, "n.sock")
p = subprocess.Popen([VGGTUNED, "--socket", dsock, "--state-dir", os.path.join(TMP, "n-state"),
                      "--backend", "cpu"], env=env, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
msgs = []
t0 = time.time()
while time.time() - t0 < 30 and not (any("READY=1" in m for m in msgs) and
                                     any("WATCHDOG=1" in m for m in msgs)):
    msgs.append(ns.recv(4096).decode())
ready_at = next((i for i, m in enumerate(msgs) if "READY=1" in m), None)
vtpy.check(ready_at is not None, f"no READY=1: {msgs}")
vtpy.check(any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in msgs), f"no STATUS: {msgs}")
vtpy.check(any("WATCHDOG=1" in m for m in msgs), f"no WATCHDOG=1: {msgs}")
# READY means the trunk is resident and the socket answers.
r = Raw(dsock)
vtpy.check(r.request({"op": "status"})["daemon"]["ready"], "READY=1 before the daemon was ready")
r.close()
p.send_signal(signal.SIGTERM)
stopping = False
while not stopping:
    try:
        stopping = "STOPPING=1" in ns.recv(4096).decode()
    except socket.timeout:
        break
vtpy.check(stopping, "no STOPPING=1 on SIGTERM")
vtpy.check(p.wait(30) == 0, "SIGTERM exit status")
ns.close()

# ---- the watchdog through a long step ------------------------------------------------
# A CPU step of several seconds (scratch, batch 128 or 64) is longer than the
# watchdog's 2 s: the device thread shows life after every layer, so the
# pings go on through it (they stopped for the step's length, and a first
# step longer than WatchdogSec had systemd restart the daemon for good).
wsock = os.path.join(TMP, "watchdog.sock")
ws = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
ws.bind(wsock)
ws.settimeout(2)
# (Under TSan: one thread, as OpenBLAS's own threads are not instrumented
# and share its buffers, and half the batch: the step is slow enough there;
# a watchdog of 8 s, as one layer there may take over 2 s, and until the
# first step ends only the watchdog's time is allowed between signs of life.
# The service's is 300 s.)
tsan = vtpy.sanitizer(a.build) == "thread"
per_class, batch, threads, wd_s = (32, 64, "1", 8) if tsan else (64, 128, "2", 2)
data = make_data(a.build, os.path.join(TMP, "wd-data"), classes=2, per_class=per_class, val=0,
                 size="64x64")
spec = job_spec(data, os.path.join(TMP, "wd-out"), mode="scratch", epochs=1, batch_size=batch,
                data={"val": None, "image_size": 64}, head={"dense": [16]})
with open(os.path.join(TMP, "wd.json"), "w") as f:
    json.dump(spec, f)
dsock = os.path.join(TMP, "w.sock")
wlog = open(os.path.join(TMP, "w.log"), "w")
p = subprocess.Popen([VGGTUNED, "--socket", dsock, "--state-dir", os.path.join(TMP, "w-state"),
                      "--backend", "cpu", "--threads", threads, "--config", "none"],
                     env=dict(os.environ, NOTIFY_SOCKET=wsock, WATCHDOG_USEC=str(wd_s * 1000000)),
                     stdout=subprocess.DEVNULL, stderr=wlog)
deadline = time.time() + 60
while not os.path.exists(dsock) and time.time() < deadline:
    time.sleep(0.1)
vtpy.run([CLIENT, "--socket", dsock, "submit", "--spec", os.path.join(TMP, "wd.json")])
pings, t0, done, end = [], time.time(), False, None
while (end is None or time.time() < end) and time.time() - t0 < 300:
    try:
        if "WATCHDOG=1" in ws.recv(4096).decode():
            pings.append(time.time())
    except socket.timeout:
        pass
    if p.poll() is not None:
        vtpy.fail(f"the daemon exited ({p.returncode}): {open(wlog.name).read()[-1500:]}")
    if not done:
        st = vtpy.run([CLIENT, "--socket", dsock, "status", "--json", "1"], check=False).stdout
        done = '"succeeded"' in st or '"failed"' in st
        secs = time.time() - t0
        end = time.time() + 2.5 if done else None  # (the ping after the last step)
gaps = [b - a for a, b in zip(pings, pings[1:])]
vtpy.check(done and '"succeeded"' in st and secs > 3 * wd_s and gaps and max(gaps) < 2 * wd_s,
           f"watchdog pings through a {secs:.1f} s job of long steps: gaps {gaps}")
p.send_signal(signal.SIGTERM)
vtpy.check(p.wait(30) == 0, f"SIGTERM exit status: {open(wlog.name).read()[-1500:]}")
wlog.close()
vtpy.done()

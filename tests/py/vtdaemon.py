"""Starting the real daemon for tests and talking to it.

Daemon(build, tmp, **opts) starts build/daemon/vggtuned on a socket and state
directory under tmp, waits until it answers hello, and can be stopped with
SIGTERM (stop), killed (kill9) and started again on the same state (start).
Raw(path) is a minimal protocol client on a plain socket, for malformed input
and for checks that do not need the CLI; cli() runs the real `vggtune`.
"""
import atexit
import json
import os
import signal
import socket
import subprocess
import time

import vtpy


class Raw:
    def __init__(self, path, hello=True, timeout=60):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.next_id = 100
        self.unsolicited = []  # messages without our request id (errors before hello)
        if hello:
            r = self.request({"op": "hello", "version": 1})
            assert r and r["ok"], f"hello: {r}; the daemon also sent {self.unsolicited}"

    def send_raw(self, data):
        self.s.sendall(data)

    def send(self, obj):
        if "id" not in obj:
            self.next_id += 1
            obj = dict(obj, id=self.next_id)
        self.send_raw((json.dumps(obj) + "\n").encode())
        return obj["id"]

    def read(self):
        """The next message, or None when the daemon closed the connection."""
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                # The daemon closed while our data was still unread (an
                # oversized frame): Linux then resets instead of EOF.
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, obj):
        rid = self.send(obj)
        while True:
            m = self.read()
            if m is None or (m.get("id") == rid and "ok" in m):
                return m
            if m.get("id") is None:
                self.unsolicited.append(m)

    def close(self):
        self.s.close()


class Daemon:
    def __init__(self, build, tmp, name="d", backend="cpu", extra=(), env=None, start=True):
        self.bin = os.path.join(build, "daemon", "vggtuned")
        self.client = os.path.join(build, "client", "vggtune")
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "vggtune.sock")
        self.state = os.path.join(self.dir, "state")
        self.log = os.path.join(self.dir, "daemon.log")
        # (--config none: a machine's /etc/vggtune/vggtuned.conf is not the test's)
        self.args = [self.bin, "--config", "none", "--socket", self.socket,
                     "--state-dir", self.state, "--backend", backend, "--threads", "2", *extra]
        self.env = env
        self.proc = None
        self.ended_by_test = False
        atexit.register(self._reap)
        if start:
            self.start()

    def _reap(self):
        """A test that fails half-way must not leave its daemon training.
        A daemon still running at exit, or one that died without the test
        stopping it (a sanitizer report, a crash), has its log's tail shown."""
        if not self.proc or self.ended_by_test:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            tail = self.log_text().splitlines()[-40:]
        except OSError:
            tail = []
        print(f"--- vggtuned exit {self.proc.returncode}; last lines of {self.log} ---", *tail,
              sep="\n", flush=True)

    def start(self, timeout=60):
        self.ended_by_test = False
        print("+", " ".join(self.args), flush=True)
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                vtpy.fail(f"vggtuned exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                r = Raw(self.socket, timeout=5)
                st = r.request({"op": "status"})
                r.close()
                if st["daemon"].get("ready"):
                    return
            except (OSError, AssertionError, KeyError):
                pass
            time.sleep(0.1)
        vtpy.fail(f"vggtuned did not become ready:\n{self.log_text()}")

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def stop(self, timeout=60):
        """SIGTERM; returns (exit status, seconds it took)."""
        t = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            vtpy.fail("vggtuned did not stop within %ds of SIGTERM" % timeout)
        self.ended_by_test = True
        self.logf.close()
        return rc, time.time() - t

    def wait_exit(self, why, timeout=300):
        """Waits for the daemon to exit by itself; returns its exit status
        (fails with why when it has not within timeout seconds)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            vtpy.fail(f"the daemon did not exit: {why}")
        self.ended_by_test = True
        self.logf.close()
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.ended_by_test = True
        self.logf.close()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def raw(self, **kw):
        return Raw(self.socket, **kw)

    def cli(self, *args, check=True, user=None, input=None, timeout=600):
        """Runs the real client; user runs it as that user (setpriv)."""
        cmd = [self.client, "--socket", self.socket, *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]
        return vtpy.run(cmd, check=check, input=input, timeout=timeout)

    def cli_json(self, *args, **kw):
        r = self.cli("--json", *args, **kw)
        return json.loads(r.stdout)

    def wait_state(self, job, states, timeout=300, user=None):
        """Polls the job until its state is one of states; returns the job."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.raw()
            j = r.request({"op": "job", "job": job})
            r.close()
            if j.get("ok") and j["job"]["state"] in states:
                return j["job"]
            time.sleep(0.2)
        vtpy.fail(f"job {job} did not reach {states} within {timeout}s")


def job_spec(data_dir, out, **extra):
    """A small, quick finetune job on generated data (CPU friendly)."""
    spec = {"name": os.path.basename(out), "mode": "finetune",
            "data": {"train": os.path.join(data_dir, "train"),
                     "val": os.path.join(data_dir, "val"),
                     "image_size": 32},
            "head": {"dense": [64, 32]}, "optimizer": {"lr": 0.01},
            "epochs": 2, "batch_size": 8, "seed": 1, "output": out}
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(spec.get(k), dict):
            spec[k] = dict(spec[k], **v)
        else:
            spec[k] = v
    return spec


def make_data(build, path, classes=3, per_class=16, val=4, seed=1, size="40x40"):
    vtpy.run([os.path.join(build, "tools", "vt-gendata"), "--out", path, "--classes",
              str(classes), "--per-class", str(per_class), "--val-per-class", str(val),
              "--seed", str(seed), "--size", size])
    return path

"""Shared helpers for vggtune's Python tests (imported by tests/py/test_*.py).

Each test script is run by CTest as
    VT_PYTHON tests/py/test_x.py --build BUILD_DIR --source SOURCE_DIR
and exits 0 (pass), 1 (fail) or 77 (skipped, with a line saying why).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

SKIP = 77


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--build", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    a.source = os.path.abspath(a.source)
    return a


def need(*modules):
    """Imports modules or exits 77 naming the missing one; with
    VT_REQUIRE_DEPS=1 (make test, after scripts/deps.sh) a missing module
    fails the test instead of skipping it."""
    out = []
    for m in modules:
        try:
            out.append(__import__(m, fromlist=["_"]))
        except ImportError as e:
            if os.environ.get("VT_REQUIRE_DEPS") == "1":
                print(f"FAIL: Python module {m} is missing ({e}); scripts/deps.sh test "
                      "installs it")
                sys.exit(1)
            print(f"SKIP: Python module {m} is missing ({e})")
            sys.exit(SKIP)
    return out


def tmpdir(keep=False):
    d = tempfile.mkdtemp(prefix="vt-py-")
    if not keep:
        import atexit
        import shutil
        atexit.register(shutil.rmtree, d, True)
    return d


def run(cmd, check=True, **kw):
    """Runs a command, echoing it; returns the CompletedProcess."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.stdout:
        print(r.stdout, end="")
    if r.stderr:
        print(r.stderr, end="", file=sys.stderr)
    if check and r.returncode != 0:
        fail(f"{cmd[0]} exited with {r.returncode}")
    return r


def sanitizer(build):
    """VT_SANITIZE of a build directory: '', 'address' or 'thread'."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("VT_SANITIZE:"):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return ""


_failures = []


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, flush=True)
        _failures.append(msg)
    return cond


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def before(deadline, msg):
    """In a polling loop: fails the test at once (check would let the loop
    poll forever) once time.time() is past deadline."""
    if time.time() > deadline:
        fail(msg)


def done():
    if _failures:
        print(f"{len(_failures)} check(s) failed")
        sys.exit(1)
    print("ok")
    sys.exit(0)


def rel_err(a, b):
    """max |a-b| / max(|b|, tiny) over whole tensors (numpy arrays)."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def safetensors_meta(path):
    """The __metadata__ of the safetensors file at path (a model, a
    checkpoint), read from its header alone."""
    import json
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n)).get("__metadata__", {})

#!/usr/bin/env python3
"""Interrupted jobs resume exactly, and the feature cache changes nothing.

Runs one seeded job (shuffle on, dropout on, validation on) several ways on
the CPU backend and requires bit-identical model tensors and identical
per-epoch metrics:
  A  straight through, feature cache on
  B  feature cache off
  C  killed with SIGKILL after two epochs, then run again from its last
     checkpoint; the finished run's checkpoint then continues to 5 epochs;
     damaged copies of it are refused, saying what is wrong
  T  checkpoints throttled: none when writing one would cost more than a
     tenth of the run
  D  stopped with SIGTERM in the middle of an epoch (mid-epoch checkpoint;
     another job, with another seed, refuses that checkpoint),
     then run again
  E  (flip and crop augmentation: cache off by design) straight vs SIGTERM
     + resume
  F  flip only: each image and its mirror image cached; identical to the
     same job with the cache off
  G  the caches in host memory (no room on the device): identical to A, and
     with flips to F1
  H  resizing, cropping and mirroring done by the backend from the decoded
     images (what the CUDA backend does; VT_RESIZE_ON_DEVICE=1 makes the CPU
     backend do it too): identical to A, E1 and F1.  The dataset's 48x48
     images take both paths: JPEGs DCT-scale to 36x36 and are resized by
     the backend, PNGs are over the loader's size bound and resized on the
     host; so does vggtuned eval's report, and a crop+flip job on data with
     unreadable images
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402

a = vtpy.args()
(np,) = vtpy.need("numpy")
from safetensors.numpy import load_file  # noqa: E402

VGGTUNED = os.path.join(a.build, "daemon", "vggtuned")
GENDATA = os.path.join(a.build, "tools", "vt-gendata")
TMP = vtpy.tmpdir(a.keep)
DATA = os.path.join(TMP, "data")
vtpy.run([GENDATA, "--out", DATA, "--classes", "3", "--per-class", "24",
          "--val-per-class", "6", "--seed", "5", "--format", "mixed"])


def job(name, **extra):
    spec = {"name": name, "mode": "finetune",
            "data": {"train": f"{DATA}/train", "val": f"{DATA}/val", "image_size": 32},
            "head": {"dense": [64, 32], "dropout": 0.3},
            "optimizer": {"lr": 0.01}, "epochs": 4, "batch_size": 8, "seed": 9,
            "output": os.path.join(TMP, name)}
    spec.update(extra)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def run(spec, *opts):
    return vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", *opts, spec])


def interrupt(spec, sig, after_epochs, delay, *opts):
    """Starts a run, waits until it printed after_epochs epoch lines (plus
    delay seconds), sends sig, and returns the exit status."""
    cmd = [VGGTUNED, "run", "--backend", "cpu", "--quiet", *opts, spec]
    print("+", " ".join(cmd), f"(then signal {sig} after epoch {after_epochs})", flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = 0
    for line in p.stdout:
        print("  |", line, end="")
        seen += line.startswith("epoch ")
        if seen >= after_epochs:
            break
    time.sleep(delay)
    p.send_signal(sig)
    rest = p.stdout.read()
    print("  |", rest.replace("\n", "\n  | "))
    p.wait()
    return p.returncode, rest


def outputs(name):
    d = os.path.join(TMP, name)
    tensors = load_file(os.path.join(d, "model.safetensors"))
    metrics = [json.loads(x) for x in open(os.path.join(d, "metrics.jsonl"))]
    return tensors, metrics


def same(ref_name, other_name):
    rt, rm = outputs(ref_name)
    ot, om = outputs(other_name)
    vtpy.check(set(rt) == set(ot), f"{other_name}: tensor names differ")
    diff = [k for k in rt if k in ot and not np.array_equal(rt[k], ot[k])]
    vtpy.check(not diff, f"{other_name}: tensors differ from {ref_name}: {diff[:5]}")
    keys = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr")
    vtpy.check(len(rm) == len(om) == 4, f"{other_name}: {len(om)} epochs recorded")
    for x, y in zip(rm, om):
        vtpy.check(all(x[k] == y[k] for k in keys),
                   f"{other_name}: epoch {y['epoch']} metrics differ: {x} vs {y}")
    print(f"{other_name}: identical to {ref_name}")


def tampered(path, key, value):
    """A copy of the checkpoint at path with metadata key set to value."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"][key] = value
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out = os.path.join(TMP, "tampered.ckpt")
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return out


# Bad foreground options are usage errors (exit 2) before any work; so is
# a job document that is missing or wrong (each named once).
for opts, msg in ((["-t", "-5"], "--threads must be an integer from 0 to 1024"),
                  (["-c", os.path.join(TMP, "no-such-dir", "x.ckpt")], "cannot write in")):
    r = vtpy.run([VGGTUNED, "run", *opts, job("bad")], check=False)
    vtpy.check(r.returncode == 2 and msg in r.stderr, f"run {opts}: {r.returncode} {r.stderr!r}")
bad_doc = os.path.join(TMP, "bad-doc.json")
with open(bad_doc, "w") as f:
    f.write('{"data": {"train": "d"}, "output": "o", "bogus": 1}')
for path, msg in ((os.path.join(TMP, "nope.json"), "nope.json: no such file"),
                  (bad_doc, "bad-doc.json: unknown field bogus")):
    r = vtpy.run([VGGTUNED, "run", path], check=False)
    vtpy.check(r.returncode == 2 and msg in r.stderr and r.stderr.count(os.path.basename(path)) == 1,
               f"run {path}: {r.returncode} {r.stderr!r}")
r = vtpy.run([VGGTUNED, "predict", "-k", "0", "model", "image"], check=False)
vtpy.check(r.returncode == 2 and "--top must be" in r.stderr, f"predict -k 0: {r.stderr!r}")

run(job("A"))
run(job("B"), "--cache-mb", "0")
same("A", "B")
_, am = outputs("A")
vtpy.check(am[1]["cached"] and not am[0]["cached"], "A: epochs after the first should be cached")

ck = os.path.join(TMP, "C.ckpt")
# (Writing estimated as instant: the first epoch is checkpointed however
# short it was; see T below for the throttle itself.)
os.environ["VT_CHECKPOINT_EST_BPS"] = "1e15"
rc, _ = interrupt(job("C"), signal.SIGKILL, 2, 0.0, "--checkpoint", ck)
del os.environ["VT_CHECKPOINT_EST_BPS"]
vtpy.check(rc == -signal.SIGKILL, f"C: expected SIGKILL, got {rc}")
vtpy.check(os.path.exists(ck), "C: no checkpoint after two epochs")
# Interrupted again while it reads its data (held there by
# VT_TEST_READ_HOLD): nothing new to save, so the checkpoint and the outputs
# stay as they were, and it says to run again (exit 75).
holds = os.path.join(TMP, "holds")
os.makedirs(holds)
open(os.path.join(holds, "C"), "w").close()
with open(ck, "rb") as f:
    ck_bytes = f.read()
metrics_c = open(os.path.join(TMP, "C", "metrics.jsonl")).read()
cmd = [VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint", ck, job("C")]
print("+", " ".join(cmd), "(SIGINT while reading)", flush=True)
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                     env=dict(os.environ, VT_TEST_READ_HOLD=holds))
deadline = time.time() + 60
while not os.path.exists(os.path.join(holds, "C.held")) and time.time() < deadline:
    time.sleep(0.05)
p.send_signal(signal.SIGINT)
_, err = p.communicate(timeout=30)
with open(ck, "rb") as f:
    vtpy.check(p.returncode == 75 and "interrupted while preparing; run the same command "
               f"again to resume from {ck}" in err and f.read() == ck_bytes and
               open(os.path.join(TMP, "C", "metrics.jsonl")).read() == metrics_c,
               f"C, SIGINT while reading: exit {p.returncode}: {err!r}")
r = run(job("C"), "--checkpoint", ck)
same("A", "C")
# The finished run left its last epoch in the checkpoint: more epochs go on
# from there.
r = run(job("C", epochs=5), "--checkpoint", ck)
vtpy.check("resumed from checkpoint: 4 epochs done" in r.stderr and
           "the data changed" not in r.stderr, f"C, 5 epochs after 4: {r.stderr[-300:]!r}")
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint", ck,
              job("C", epochs=3)], check=False)
vtpy.check(r.returncode == 1 and "holds 5 epochs, more than this job's 3" in r.stderr,
           f"C, 3 epochs after 5: {r.returncode} {r.stderr[-300:]!r}")
# Data that changed since the checkpoint: the job goes on from it, and says
# that it is not the run it would have been (unchanged data: not a word).
extra_img = os.path.join(DATA, "train", sorted(os.listdir(f"{DATA}/train"))[0], "zz-new.png")
first = sorted(os.listdir(os.path.dirname(extra_img)))[0]
shutil.copy(os.path.join(os.path.dirname(extra_img), first), extra_img)
r = run(job("C", epochs=6), "--checkpoint", ck)
os.unlink(extra_img)
vtpy.check("the data changed since the checkpoint (72 training and 18 validation images" in
           r.stderr and "73 training" in r.stderr, f"C, changed data: {r.stderr[-400:]!r}")
# A damaged checkpoint is refused with what is wrong in it, not half read.
# Epoch numbers in its history outside int's range (converting them was
# undefined behaviour, and the job went on).
hist = json.loads(vtpy.safetensors_meta(ck)["history"])
for key, value, msg in (
        ("history", json.dumps([dict(hist[0], epoch=1e10)] + hist[1:]),
         "checkpoint history: epoch 1e+10 is not an epoch number"),
        ("history", json.dumps(hist[:-1] + [dict(hist[-1], kept_epoch=-3e9)]),
         "checkpoint history: kept_epoch -3e+09 is not an epoch number")):
    r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint",
                  tampered(ck, key, value), job("C-bad", epochs=7)], check=False)
    vtpy.check(r.returncode == 1 and msg in r.stderr,
               f"damaged {key}, expected {msg!r}: {r.returncode} {r.stderr[-300:]!r}")
# A step log row whose step is no int64 is skipped like a short row
# (converting it was undefined behaviour: it came back as step -2^63).
steps = [row[0] for row in json.loads(vtpy.safetensors_meta(ck)["step_log"])]
bad = tampered(ck, "step_log", json.dumps([[s, 0.0, 1.0, 0.5] for s in steps] +
                                          [[1e300, 0.0, 1.0, 0.5]]))
run(job("C-steps", epochs=7), "--checkpoint", bad)
kept = [row[0] for row in json.loads(vtpy.safetensors_meta(bad)["step_log"])]
vtpy.check(steps and kept[:len(steps)] == steps and all(0 <= s < 2 ** 53 for s in kept),
           f"a step log with step 1e300, resumed: steps {steps} became {kept}")
# A position in the epoch outside it: it indexes the epoch's order of
# images (a negative one crashed the run, a large one said "out of memory").
for pos in (-100000, 100000):
    r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint",
                  tampered(ck, "position", f"train {pos} 0 0 0 0 0"), job("C-bad", epochs=7)],
                 check=False)
    vtpy.check(r.returncode == 1 and f"position {pos} in the epoch is outside its 72 images"
               in r.stderr, f"position {pos}: {r.returncode} {r.stderr[-300:]!r}")
# Epoch-end checkpoints cost at most a tenth of a run: with writing one
# estimated as endlessly slow, a run killed after two epochs wrote none.
ck = os.path.join(TMP, "T.ckpt")
os.environ["VT_CHECKPOINT_EST_BPS"] = "1"
rc, _ = interrupt(job("T"), signal.SIGKILL, 2, 0.0, "--checkpoint", ck)
del os.environ["VT_CHECKPOINT_EST_BPS"]
vtpy.check(rc == -signal.SIGKILL and not os.path.exists(ck),
           f"T: a checkpoint was written although it would cost more than the run: {rc}")

ck = os.path.join(TMP, "D.ckpt")
rc, out = interrupt(job("D"), signal.SIGTERM, 1, 0.25, "--checkpoint", ck, "--cache-mb", "0")
vtpy.check(rc == 75 and "checkpoint written" in out, f"D: SIGTERM gave {rc}: {out}")
# Another job (another seed) refuses D's checkpoint, which stays for D.
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint", ck,
              job("D-other", seed=10)], check=False)
vtpy.check(r.returncode == 1 and "written by a different job" in r.stderr and
           "differs in seed" in r.stderr and os.path.exists(ck),
           f"another job's checkpoint: rc {r.returncode}: {r.stderr[-300:]!r}")
r = run(job("D"), "--checkpoint", ck, "--cache-mb", "0")
vtpy.check("continuing the next one where it stopped" in r.stderr,
           "D: the SIGTERM did not land mid-epoch (timing); resumed at an epoch boundary")
same("A", "D")

aug = {"augment": {"flip": True, "crop": 0.125}}
run(job("E1", **aug))
ck = os.path.join(TMP, "E.ckpt")
rc, out = interrupt(job("E2", **aug), signal.SIGTERM, 2, 0.3, "--checkpoint", ck)
vtpy.check(rc == 75, f"E2: SIGTERM gave {rc}")
run(job("E2", **aug), "--checkpoint", ck)
same("E1", "E2")
_, em = outputs("E1")
vtpy.check(not any(m["cached"] for m in em), "E1: random crops must turn the cache off")

flip = {"augment": {"flip": True}}
run(job("F1", **flip))
run(job("F2", **flip), "--cache-mb", "0")
same("F1", "F2")
_, fm = outputs("F1")
vtpy.check(not fm[0]["cached"] and all(m["cached"] for m in fm[1:]),
           "F1: flips alone are cached (both copies) after the first epoch")

host = ("--cache-mb", "0", "--host-cache-mb", "64")
for ref, name, extra in (("A", "G1", {}), ("F1", "G2", flip)):
    r = run(job(name, **extra), *host)
    vtpy.check("feature cache on, in host memory" in r.stderr,
               f"{name}: the cache should be in host memory: {r.stderr[-400:]!r}")
    same(ref, name)
    _, gm = outputs(name)
    vtpy.check(all(m["cached"] for m in gm[1:]), f"{name}: later epochs should be cached")
r = run(job("G3"), "--cache-mb", "0", "--host-cache-mb", "0")
vtpy.check("feature cache off (does not fit)" in r.stderr, f"G3: {r.stderr[-400:]!r}")
r = vtpy.run([VGGTUNED, "run", "--host-cache-mb", "lots", job("G4")], check=False)
vtpy.check(r.returncode == 2 and "--host-cache-mb must be an integer" in r.stderr,
           f"a bad --host-cache-mb: {r.returncode} {r.stderr!r}")
device = dict(os.environ, VT_RESIZE_ON_DEVICE="1")
for ref, name, extra in (("A", "H1", {}), ("E1", "H2", aug), ("F1", "H3", flip)):
    vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", job(name, **extra)], env=device)
    same(ref, name)
# ... also when some images cannot be read (the batch closes its gaps by its
# boxes, which keep pointing at their images)
BAD = os.path.join(TMP, "data-bad")
subprocess.run(["cp", "-r", DATA, BAD], check=True)
# Cut short after a sound header: the probe passes them, the decode fails.
for cls in sorted(os.listdir(f"{BAD}/train"))[:2]:
    d_ = os.path.join(BAD, "train", cls)
    for name in sorted(os.listdir(d_))[:2]:
        whole = open(os.path.join(d_, name), "rb").read()
        with open(os.path.join(d_, "aa-cut-" + name), "wb") as f:
            f.write(whole[:len(whole) // 2])
bad_data = {"data": {"train": f"{BAD}/train", "val": f"{BAD}/val", "image_size": 32}}
run(job("H4", **bad_data, **aug))
vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", job("H5", **bad_data, **aug)],
         env=device)
same("H4", "H5")
# vggtuned eval decodes through the same loader: the report is the same
# either way (the PNG-heavy val set takes both paths, as above).
model = os.path.join(TMP, "F1", "model.safetensors")
ev = [VGGTUNED, "eval", "--backend", "cpu", model, f"{DATA}/val"]
host_ev = vtpy.run(ev, env=dict(os.environ, VT_RESIZE_ON_DEVICE="0")).stdout
dev_ev = vtpy.run(ev, env=device).stdout
vtpy.check(host_ev == dev_ev and "accuracy" in host_ev,
           f"eval differs with the resize on the device:\n{host_ev}\n{dev_ev}")
vtpy.check("nan" not in host_ev, f"eval prints '-' for an undefined precision:\n{host_ev}")
# The folders a checkpoint says its job made are another job's to remove
# only when it is that job, writing there: a different job refused the
# checkpoint (another lr) leaves the user's empty folders of its own output
# alone.
ck = os.path.join(TMP, "made.vtckpt")
run(job("made", output=os.path.join(TMP, "made1", "a", "b"), epochs=1), "--checkpoint", ck)
mine = os.path.join(TMP, "made2", "p", "q")
os.makedirs(mine)
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", "--checkpoint", ck,
              job("made", output=mine, epochs=2, optimizer={"lr": 0.02})], check=False)
vtpy.check(r.returncode == 1 and "written by a different job" in r.stderr and
           os.path.isdir(mine), f"a refused checkpoint: {r.returncode}, {os.path.isdir(mine)}: "
           f"{r.stderr[-300:]!r}")
vtpy.done()

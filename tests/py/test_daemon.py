#!/usr/bin/env python3
"""The daemon and the client, end to end, on the CPU backend.

Starts the real vggtuned on a temporary socket and drives it with the real
vggtune client (and raw socket writes for malformed input):
  submit -> watch -> success with outputs; predict equals the foreground
  engine's prediction; eval; cancel mid-run; two jobs at once both finish;
  every bad input gets an error reply and the daemon goes on serving; a
  client that stops reading is cut off while memory stays bounded; 50
  concurrent clients are served; SIGHUP is logged, not a stop.
"""
import json
import math
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402
from vtdaemon import Daemon, Raw, job_spec, make_data  # noqa: E402

a = vtpy.args()
TMP = vtpy.tmpdir(a.keep)
DATA = make_data(a.build, os.path.join(TMP, "data"))
VGGTUNED = os.path.join(a.build, "daemon", "vggtuned")
# VGGTUNE_LOG=debug: the daemon's log level from the environment (a config
# file or --log-level would override it), and debug lines that stay out of
# the jobs' own logs.
d = Daemon(a.build, TMP, env=dict(os.environ, VGGTUNE_LOG="debug"))


def write_spec(name, **extra):
    spec = job_spec(DATA, os.path.join(TMP, "out", name), **extra)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def expect_error(msg, code, contains=""):
    vtpy.check(msg is not None and msg.get("ok") is False and msg["error"]["code"] == code
               and contains in msg["error"]["message"],
               f"expected {code} ({contains!r}), got {msg}")


# ---- submit -> watch -> success -------------------------------------------
r = d.cli("submit", "--spec", write_spec("first", epochs=3), "--watch")
vtpy.check("submitted job 1" in r.stdout, f"submit output: {r.stdout!r}")
vtpy.check(r.returncode == 0, "submit --watch of a good job must exit 0")
out = os.path.join(TMP, "out", "first")
for f in ("model.safetensors", "metrics.jsonl", "classmap.json"):
    vtpy.check(os.path.exists(os.path.join(out, f)), f"missing output {f}")
metrics = [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]
vtpy.check(len(metrics) == 3 and metrics[-1]["val_accuracy"] is not None,
           f"metrics.jsonl: {metrics}")
job = d.cli_json("status", "1")["job"]
vtpy.check(job["state"] == "succeeded" and job["epochs_done"] == 3, f"job 1: {job}")
vtpy.check(len(job["metrics"]) == 3, "job 1 should report 3 epochs of metrics")
vtpy.check(job["compute"] == "fp32", f"job 1 computes in fp32 on the CPU: {job.get('compute')}")
# data.preprocess "auto", resolved as the model file records it
model_prep = vtpy.safetensors_meta(os.path.join(out, "model.safetensors"))["preprocess"]
first_model = os.path.join(TMP, "first-model.safetensors")  # (a trunk for a daemon below)
shutil.copy(os.path.join(out, "model.safetensors"), first_model)
vtpy.check(job["spec"]["data"]["preprocess"] == "auto" and job.get("preprocess") == model_prep,
           f"job 1's preprocessing: {job.get('preprocess')} vs the model's {model_prep}")
vtpy.check("job 1: prepared in " in d.log_text(),
           "VGGTUNE_LOG=debug: the daemon's log should have the job's debug line")
vtpy.check("prepared in" not in r.stdout, f"a debug line reached the job's watch: {r.stdout!r}")
# A watch that begins after the job has spoken still shows what it said:
# here the warning about a symbolic link the scan skipped.
linked = os.path.join(TMP, "linked")
subprocess.run(["cp", "-r", DATA, linked], check=True)
first_class = sorted(os.listdir(os.path.join(linked, "train")))[0]
os.symlink("/etc/passwd", os.path.join(linked, "train", first_class, "passwd.jpg"))
shutil.copy(os.path.join(linked, "train", first_class, sorted(os.listdir(
    os.path.join(linked, "train", first_class)))[0]), os.path.join(linked, "train", first_class,
                                                                    "scan.bmp"))
r = d.cli_json("submit", "--spec", write_spec("linked", epochs=1,
                                              data={"train": os.path.join(linked, "train"),
                                                    "val": os.path.join(linked, "val")}))
d.wait_state(r["job"]["id"], ["succeeded"], timeout=120)
w = d.cli("watch", str(r["job"]["id"]))
vtpy.check("warn: " in w.stdout and "1 symbolic link skipped" in w.stdout and
           "1 file skipped, not JPEG or PNG by its name (.jpg, .jpeg or .png; the first: "
           f"{linked}/train/{first_class}/scan.bmp)" in w.stdout,
           f"a late watch should replay the job's warnings: {w.stdout!r}")
# eval says so too (through the daemon and in the foreground)
e = d.cli("eval", str(r["job"]["id"]), os.path.join(linked, "train")).stdout
vtpy.check("(1 symbolic link not followed)" in e and
           "(1 file skipped, not JPEG or PNG by name)" in e, f"eval of a folder with a link: {e!r}")
e = vtpy.run([VGGTUNED, "eval", "--backend", "cpu",
              os.path.join(TMP, "out", "linked", "model.safetensors"),
              os.path.join(linked, "train")]).stdout
vtpy.check("(1 symbolic link not followed)" in e, f"vggtuned eval of a folder with a link: {e!r}")
# An image it cannot read is named with why, not only counted; and a folder
# none of whose images can be read says so, naming the first.
broken = os.path.join(TMP, "broken")
os.makedirs(os.path.join(broken, first_class))
open(os.path.join(broken, first_class, "zero.jpg"), "w").close()
shutil.copy(os.path.join(linked, "train", first_class, "scan.bmp"),
            os.path.join(broken, first_class, "good.jpg"))
rb = d.cli("eval", str(r["job"]["id"]), broken)
vtpy.check(rb.returncode == 0 and "(1 unreadable image skipped)" in rb.stdout and
           f"first unreadable image: {broken}/{first_class}/zero.jpg: empty file\n" in rb.stdout,
           f"eval with an unreadable image: {rb.stdout!r}")
os.unlink(os.path.join(broken, first_class, "good.jpg"))
rb = d.cli("eval", str(r["job"]["id"]), broken, check=False)
vtpy.check(rb.returncode == 1 and f"the one image in {broken} could not be read: "
           f"{broken}/{first_class}/zero.jpg: empty file" in rb.stderr,
           f"eval with no readable image: {rb.stderr!r}")
# A validation class folder that is a link is skipped, so the classes
# differ: the warning about the link, which says why, comes before the error.
linked_val = os.path.join(TMP, "linked-val")
subprocess.run(["cp", "-r", DATA, linked_val], check=True)
os.rename(os.path.join(linked_val, "val", first_class), os.path.join(linked_val, first_class))
os.symlink(os.path.join(linked_val, first_class), os.path.join(linked_val, "val", first_class))
r = subprocess.run([VGGTUNED, "run", "--backend", "cpu",
                    write_spec("linked-val", epochs=1,
                               data={"train": os.path.join(linked_val, "train"),
                                     "val": os.path.join(linked_val, "val")})],
                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
link_at = r.stderr.find("1 symbolic link skipped")
vtpy.check(r.returncode == 1 and 0 <= link_at < r.stderr.find("validation classes in"),
           f"a validation class folder that is a link: {r.returncode}: {r.stderr!r}")
# A class folder with no image at all is said to be one (not "no readable
# image"), and so is a validation class that val_split gives none (a class
# of one image keeps it for training).
odd = os.path.join(TMP, "odd-classes")
subprocess.run(["cp", "-r", os.path.join(DATA, "train"), odd], check=True)
one = sorted(os.listdir(odd))[0]
for name in sorted(os.listdir(os.path.join(odd, one)))[1:]:
    os.unlink(os.path.join(odd, one, name))
os.mkdir(os.path.join(odd, "bmps"))
shutil.copy(os.path.join(linked, "train", first_class, "scan.bmp"), os.path.join(odd, "bmps"))
odd_spec = job_spec(DATA, os.path.join(TMP, "out", "odd"), epochs=1,
                    data={"train": odd, "val_split": 0.3})
del odd_spec["data"]["val"]
with open(os.path.join(TMP, "odd.json"), "w") as f:
    json.dump(odd_spec, f)
r = subprocess.run([VGGTUNED, "run", "--backend", "cpu", os.path.join(TMP, "odd.json")],
                   stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
vtpy.check(r.returncode == 0 and "training class 'bmps' has no image (JPEG or PNG)" in r.stderr and
           f"validation class '{one}' has no image: val_split gives validation none of a "
           "class of fewer than two" in r.stderr and "no readable image" not in r.stderr,
           f"classes without images: {r.returncode}: {r.stderr!r}")
# bf16 asked for on the CPU backend: status says what it computes in.
r = d.cli_json("submit", "--spec", write_spec("bf16", epochs=1, precision="bf16"))
j = d.wait_state(r["job"]["id"], ["succeeded"], timeout=120)
text = d.cli("status", str(j["id"])).stdout
vtpy.check("precision bf16 (computes in fp32 on this daemon's backend)" in text,
           f"status of a bf16 job on the CPU: {text!r}")

# ---- predict == the foreground engine ---------------------------------------
imgs = sorted(os.path.join(DATA, "val", c, f) for c in os.listdir(os.path.join(DATA, "val"))
              for f in os.listdir(os.path.join(DATA, "val", c)))[:5]
ours = d.cli_json("predict", "1", *imgs, "--top", "3")["predictions"]
fg = json.loads(vtpy.run([VGGTUNED, "predict", "--backend", "cpu", "--json", "--top", "3",
                          os.path.join(out, "model.safetensors"), *imgs]).stdout)
for p, q in zip(ours, fg):
    vtpy.check([t["class"] for t in p["top"]] == [t["class"] for t in q["top"]],
               f"predict classes differ for {p['image']}")
    vtpy.check(all(abs(t["probability"] - u["probability"]) < 1e-6
                   for t, u in zip(p["top"], q["top"])),
               f"predict probabilities differ for {p['image']}: {p} vs {q}")
    # every class's logit, the same as the foreground's, and their softmax
    # is the probabilities
    ex = [math.exp(v - max(p["logits"])) for v in p["logits"]]
    vtpy.check(len(p["logits"]) == len(p["probabilities"]) and
               all(abs(a - b) < 1e-4 for a, b in zip(p["logits"], q["logits"])) and
               all(abs(e / sum(ex) - pr) < 1e-5 for e, pr in zip(ex, p["probabilities"])),
               f"predict logits for {p['image']}: {p} vs {q}")
# Images that cannot be read get an error each; the others are still
# classified (as before: an image's features do not depend on its batch on
# the CPU), and the exit status says that not all could be read.
broken = os.path.join(TMP, "broken.jpg")
with open(broken, "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not a JPEG")
mixed = [imgs[0], os.path.join(TMP, "missing.jpg"), *imgs[1:3], broken, imgs[3]]
good = [ours[0], ours[1], ours[2], ours[3]]
r = d.cli("--json", "predict", "1", *mixed, "--top", "3", check=False)
fgr = vtpy.run([VGGTUNED, "predict", "--backend", "cpu", "--json", "--top", "3",
                os.path.join(out, "model.safetensors"), *mixed], check=False)
for who, res, preds in (("vggtune", r, json.loads(r.stdout)["predictions"] if r.stdout else []),
                        ("vggtuned", fgr, json.loads(fgr.stdout) if fgr.stdout else [])):
    errs = [p for p in preds if "error" in p]
    oks = [p for p in preds if "error" not in p]
    vtpy.check(res.returncode == 1 and "2 of 6 images could not be read" in res.stderr and
               [p["image"] for p in preds] == mixed and
               [p["image"] for p in errs] == [mixed[1], broken] and
               "missing.jpg" in errs[0]["error"] and
               [[t["class"] for t in p["top"]] for p in oks] ==
               [[t["class"] for t in p["top"]] for p in good] and
               all(abs(t["probability"] - u["probability"]) < 1e-6 for p, q in zip(oks, good)
                   for t, u in zip(p["top"], q["top"])),
               f"{who} predict with unreadable images: {res.returncode} {res.stderr!r} {preds}")
r = d.cli("predict", "1", imgs[0], broken, check=False)
vtpy.check(r.returncode == 1 and r.stdout.splitlines()[1].startswith(f"{broken}:  error: "),
           f"vggtune predict, text, an unreadable image: {r.stdout!r}")
# The foreground's small messages: with backend auto, one line says which
# backend runs (and, without a GPU, why not CUDA); a MODEL that is not one is
# called so; a failed `vggtuned run` quotes the job's name.
r = vtpy.run([VGGTUNED, "predict", os.path.join(out, "model.safetensors"), imgs[0]])
info = [ln for ln in r.stderr.splitlines() if ln.startswith("vggtuned: info: ")]
vtpy.check(len(info) == 1 and info[0].startswith("vggtuned: info: backend "),
           f"vggtuned predict, backend auto: one line about the backend: {r.stderr!r}")
r = vtpy.run([VGGTUNED, "predict", "--backend", "cpu", imgs[1], imgs[0]], check=False)
vtpy.check(r.returncode != 0 and f"{imgs[1]} is not a vggtune model file: " in r.stderr,
           f"vggtuned predict IMAGE IMAGE: {r.stderr!r}")
# Usage errors of the foreground commands say what is wrong, in one line.
for args, want in ((["run"], "vggtuned run: no job document (JOB.json) given"),
                   (["run", "a.json", "b.json"], "vggtuned run: one job document at a time"),
                   (["eval", "--top", "2", "m", "d"], "vggtuned eval: unknown option --top"),
                   (["eval", "m"], "vggtuned eval: a model and a folder are needed"),
                   (["predict", "m"], "vggtuned predict: no image given"),
                   (["predict", "m", "i", "-k"], "vggtuned predict: option -k needs a value"),
                   (["predict", "--top"], "vggtuned predict: option --top needs a value"),
                   (["predict", "-z", "m", "i"], "vggtuned predict: unknown option -z"),
                   (["predict", "--json", "-zj", "m", "i"], "vggtuned predict: unknown option -z"),
                   (["eval", "--json=1", "m", "d"], "vggtuned eval: option --json takes no value"),
                   (["eval", "--bogus", "m", "d"], "vggtuned eval: unknown option --bogus")):
    r = vtpy.run([VGGTUNED, *args], check=False)
    vtpy.check(r.returncode == 2 and r.stderr.startswith(want) and
               f"(vggtuned {args[0]} --help for its usage)" in r.stderr and
               len(r.stderr.splitlines()) == 1, f"vggtuned {' '.join(args)}: {r.stderr!r}")
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet",
              write_spec("job", data={"train": os.path.join(TMP, "nothere"), "val": None})],
             check=False)
vtpy.check(r.returncode != 0 and "vggtuned: job 'job' failed: " in r.stderr,
           f"vggtuned run of a failing job named 'job': {r.stderr!r}")
ev = d.cli_json("eval", "1", os.path.join(DATA, "val"))["eval"]
vtpy.check(ev["n"] == 12 and len(ev["confusion"]) == 3, f"eval: {ev}")
fg_ev = json.loads(vtpy.run([VGGTUNED, "eval", "--backend", "cpu", "--json",
                             os.path.join(out, "model.safetensors"),
                             os.path.join(DATA, "val")]).stdout)
vtpy.check(fg_ev == ev, f"vggtuned eval --json should be the daemon's eval: {fg_ev} vs {ev}")
fg_text = vtpy.run([VGGTUNED, "eval", "--backend", "cpu", os.path.join(out, "model.safetensors"),
                    os.path.join(DATA, "val")]).stdout
cli_text = d.cli("eval", "1", os.path.join(DATA, "val")).stdout
vtpy.check(fg_text == cli_text and "     0     1     2\n" in cli_text,
           f"vggtuned eval and vggtune eval should print the same report:\n{fg_text}\n{cli_text}")
vtpy.check(abs(ev["accuracy"] - metrics[-1]["val_accuracy"]) < 1e-9,
           f"eval accuracy {ev['accuracy']} != last val_accuracy {metrics[-1]['val_accuracy']}")

# ---- cancel mid-run ---------------------------------------------------------
r = d.cli_json("submit", "--spec", write_spec("long", epochs=200))
long_id = r["job"]["id"]
d.wait_state(long_id, ["running"])
# Another job may not write where a running one does.
r = d.cli("submit", "--spec", write_spec("long", epochs=1), check=False)
vtpy.check(r.returncode == 1 and f"where job {long_id} (running) writes" in r.stderr,
           f"a second job on a running job's output: {r.returncode} {r.stderr!r}")
time.sleep(1.0)
# ... nor under another name (a symbolic link to it): that job fails when it
# starts, and the running one goes on.
long_alias = os.path.join(TMP, "long-alias")
os.symlink(os.path.join(TMP, "out", "long"), long_alias)
with open(os.path.join(TMP, "long-alias.json"), "w") as f:
    json.dump(job_spec(DATA, long_alias, epochs=1), f)
la = d.cli_json("submit", "--spec", os.path.join(TMP, "long-alias.json"))["job"]["id"]
la = d.wait_state(la, ["failed", "succeeded"], timeout=120)
vtpy.check(la["state"] == "failed" and f"is where job {long_id} writes (under another name)"
           in la.get("error", "") and d.cli_json("status", str(long_id))["job"]["state"] ==
           "running", f"a second job on a running job's output under another name: {la}")
# (cancelled after its first epoch, so that it has outputs to take over)
deadline = time.time() + 300
while d.cli_json("status", str(long_id))["job"]["epochs_done"] < 1 and time.time() < deadline:
    time.sleep(0.05)
r = d.cli("cancel", str(long_id))
vtpy.check(r.returncode == 0, "cancel must exit 0")
j = d.wait_state(long_id, ["cancelled"], timeout=30)
vtpy.check(j["epochs_done"] < 200 and "cancelled by" in j.get("reason", ""), f"cancelled: {j}")
r = d.cli("watch", str(long_id), check=False)
vtpy.check(r.returncode == 1, f"watching a cancelled job must exit 1, got {r.returncode}")
r = d.cli("cancel", str(long_id), check=False)
vtpy.check(r.returncode == 1 and "already" in r.stderr, f"second cancel: {r.stderr!r}")
# Once it has ended, a new job may take over that output, and says so.
r = d.cli_json("submit", "--spec", write_spec("long", epochs=1))
d.wait_state(r["job"]["id"], ["succeeded"], timeout=120)
w = d.cli("watch", str(r["job"]["id"])).stdout
vtpy.check("removed an unfinished earlier job's outputs from" in w and "metrics.jsonl" in w,
           f"taking over an output directory: {w!r}")

# A succeeded job's directory holds the model its predict and eval use:
# taking it over must be asked for (--overwrite), and afterwards job 1 says
# its outputs are gone instead of answering with the other job's model.
r = d.cli("submit", "--spec", write_spec("first", epochs=1), check=False)
vtpy.check(r.returncode == 2 and "holds the model of job 1, which finished" in
           r.stderr and "--overwrite" in r.stderr, f"reusing a succeeded job's output: {r.stderr!r}")
stale = os.path.join(out, "bottleneck_features.safetensors")  # as an earlier bottleneck job's
with open(stale, "w") as f:
    f.write("stale")
r = d.cli_json("submit", "--spec", write_spec("first", epochs=1), "--overwrite")
over = d.wait_state(r["job"]["id"], ["succeeded", "failed"], timeout=120)
vtpy.check(over["state"] == "succeeded", f"the job with --overwrite: {over}")
vtpy.check(not os.path.exists(stale), "a stale output of an earlier job was left beside the model")
lines = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
vtpy.check(len(lines) == 1, f"metrics.jsonl should be the new job's one epoch: {lines}")
for args in (("predict", "1", imgs[0]), ("eval", "1", os.path.join(DATA, "val"))):
    r = d.cli(*args, check=False)
    vtpy.check(r.returncode == 1 and "job 1 has no model any more: " in r.stderr and
               f"was replaced by job {over['id']}'s" in r.stderr,
               f"{args[0]} of a replaced job: {r.returncode} {r.stderr!r}")
# The finished outputs a job replaces wait in .vggtune-replaced until it
# ends: removed when it succeeds; put back when it is cancelled (or fails),
# in place of its own, so that the earlier job's predict answers again.
aside = os.path.join(out, ".vggtune-replaced")
vtpy.check(not os.path.exists(aside), "the replaced outputs stayed after the job succeeded")
kept = ("model.safetensors", "classmap.json", "metrics.jsonl", "metrics.csv")
before = {n: open(os.path.join(out, n), "rb").read() for n in kept}
cj = d.cli_json("submit", "--spec", write_spec("first", epochs=200), "--overwrite")["job"]["id"]
deadline = time.time() + 300
while d.cli_json("status", str(cj))["job"]["epochs_done"] < 1 and time.time() < deadline:
    time.sleep(0.05)
vtpy.check(set(kept) <= set(os.listdir(aside)) and
           not os.path.exists(os.path.join(out, "model.safetensors")) and
           len(open(os.path.join(out, "metrics.jsonl")).read().splitlines()) >= 1,
           f"while the overwriting job runs: {sorted(os.listdir(out))} {os.listdir(aside)}")
# Meanwhile the earlier job's predict, and a job starting its head from it,
# are told where its model is (before: "no such file", and the init_job's
# job was accepted, then failed)
r = d.cli("predict", str(over["id"]), imgs[0], check=False)
vtpy.check(r.returncode == 1 and f"is being replaced by job {cj} (running" in r.stderr and
           ".vggtune-replaced until that job succeeds" in r.stderr,
           f"predict of a job whose model is being replaced: {r.returncode} {r.stderr!r}")
r = d.cli("submit", "--data", os.path.join(DATA, "train"), "--init-head", str(over["id"]),
          "--out", os.path.join(TMP, "out", "from-replaced"), check=False)
vtpy.check(r.returncode != 0 and "init_job: " in r.stderr and
           f"is being replaced by job {cj}" in r.stderr,
           f"--init-head of a job whose model is being replaced: {r.returncode} {r.stderr!r}")
d.cli("cancel", str(cj))
d.wait_state(cj, ["cancelled"], timeout=30)
vtpy.check(not os.path.exists(aside) and
           all(open(os.path.join(out, n), "rb").read() == before[n] for n in kept),
           f"a cancelled overwrite should put back the earlier outputs: {sorted(os.listdir(out))}")
r = d.cli("predict", str(over["id"]), imgs[0], check=False)
w = d.cli("watch", str(cj), check=False).stdout
vtpy.check(r.returncode == 0 and "put back the earlier job's" in w,
           f"predict after a cancelled overwrite: {r.returncode} {r.stderr!r} {w[-400:]!r}")
# kill -9 while the outputs move aside, or back, one file at a time: the
# move fills a folder of its own, and the next run puts its files back in
# place, so that the set is never split (the part left in the output
# directory would be taken for an unfinished job's and removed).  Here the
# folder is made as such a kill leaves it, two of the four files moved.
for folder in (".vggtune-replacing", ".vggtune-restoring"):
    os.mkdir(os.path.join(out, folder))
    for n in ("model.safetensors", "metrics.jsonl"):
        os.rename(os.path.join(out, n), os.path.join(out, folder, n))
    cj = d.cli_json("submit", "--spec", write_spec("first", epochs=200), "--overwrite")["job"]["id"]
    deadline = time.time() + 300
    while d.cli_json("status", str(cj))["job"]["epochs_done"] < 1 and time.time() < deadline:
        time.sleep(0.05)
    vtpy.check(set(kept) <= set(os.listdir(aside)) and
               not os.path.exists(os.path.join(out, folder)),
               f"after a kill in {folder}: {sorted(os.listdir(out))} {os.listdir(aside)}")
    d.cli("cancel", str(cj))
    d.wait_state(cj, ["cancelled"], timeout=30)
    w = d.cli("watch", str(cj), check=False).stdout
    vtpy.check(not os.path.exists(aside) and
               all(open(os.path.join(out, n), "rb").read() == before[n] for n in kept) and
               "a run stopped while moving them" in w,
               f"after a kill in {folder}, cancelled: {sorted(os.listdir(out))} {w[-600:]!r}")
# What the directory holds decides, however its path is spelled: through a
# symbolic link, vggtune submit refuses it, and a document that reaches the
# daemon anyway fails when the job starts.
alias = os.path.join(TMP, "alias")
os.symlink(out, alias)
with open(os.path.join(TMP, "alias.json"), "w") as f:
    json.dump(job_spec(DATA, alias, epochs=1), f)
r = d.cli("submit", "--spec", os.path.join(TMP, "alias.json"), check=False)
vtpy.check(r.returncode == 2 and f"holds the model of job {over['id']}, which finished" in r.stderr,
           f"vggtune submit into an alias of a succeeded job's directory: {r.stderr!r}")
raw = d.raw()
rep = raw.request({"op": "submit", "job": job_spec(DATA, alias, epochs=1)})
raw.close()
al = d.wait_state(rep["job"]["id"], ["succeeded", "failed"], timeout=120)
vtpy.check(al["state"] == "failed" and f"holds the model of job {over['id']}" in al["error"]
           and os.path.exists(os.path.join(out, "model.safetensors")),
           f"an alias of a succeeded job's directory: {al}")
# A directory whose finished model was deleted holds nothing to protect:
# a job may write there again without --overwrite (and one that never got
# a model does not hold up the next).
gone = os.path.join(TMP, "out", "gone")
g1 = d.cli_json("submit", "--spec", write_spec("gone", epochs=1))["job"]["id"]
d.wait_state(g1, ["succeeded"], timeout=120)
shutil.rmtree(gone)
g2 = d.cli_json("submit", "--spec", write_spec("gone", epochs=1))["job"]["id"]
vtpy.check(d.wait_state(g2, ["failed", "succeeded"], timeout=120)["state"] == "succeeded",
           "a deleted output directory of a finished job held up a new job")
# A model that vggtuned run writes over a daemon job's (with overwrite) is
# not that job's: its predict refuses, naming who wrote it.
spec_fg = job_spec(DATA, out, epochs=1, overwrite=True)
with open(os.path.join(TMP, "fg-over.json"), "w") as f:
    json.dump(spec_fg, f)
vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", os.path.join(TMP, "fg-over.json")])
r = d.cli("predict", str(over["id"]), imgs[0], check=False)
vtpy.check(r.returncode == 1 and "was replaced by vggtuned run's" in r.stderr,
           f"predict of a job whose model vggtuned run replaced: {r.stderr!r}")
# Another vggtuned run is another writer too: it replaces that finished
# model only with overwrite.  Starting again from the model in the output
# directory itself: it is read before the directory is taken over (which
# removes the earlier outputs).
spec_again = job_spec(DATA, out, epochs=1, init=os.path.join(out, "model.safetensors"))
with open(os.path.join(TMP, "fg-again.json"), "w") as f:
    json.dump(spec_again, f)
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", os.path.join(TMP, "fg-again.json")],
             check=False)
vtpy.check(r.returncode == 1 and "holds the model of vggtuned run, which finished" in r.stderr,
           f"vggtuned run over vggtuned run's finished model: {r.returncode} {r.stderr[-300:]!r}")
spec_again["overwrite"] = True
with open(os.path.join(TMP, "fg-again.json"), "w") as f:
    json.dump(spec_again, f)
r = vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", os.path.join(TMP, "fg-again.json")],
             check=False)
vtpy.check(r.returncode == 0 and os.path.exists(os.path.join(out, "model.safetensors")),
           f"init from the model in the output directory: {r.returncode} {r.stderr[-300:]!r}")
# An unfinished job's model (a keep_best job cancelled or failed after
# saving one: no classmap.json naming it) is taken over without overwrite.
unfinished = os.path.join(TMP, "out", "unfinished")
os.makedirs(unfinished)
shutil.copy(os.path.join(TMP, "out", "long", "model.safetensors"), unfinished)
uf = d.cli_json("submit", "--spec", write_spec("unfinished", epochs=1))["job"]["id"]
uf = d.wait_state(uf, ["failed", "succeeded"], timeout=120)
vtpy.check(uf["state"] == "succeeded", f"taking over an unfinished job's model: {uf}")
# Job numbers start again at 1 in a new job store (a state directory
# wiped): the model of job 1 of the old store is not the new job 1's, so
# that job refuses its directory without --overwrite, names the old writer,
# and the new store's job 1 does not take it for its own model.
reset = Daemon(a.build, TMP, name="reset")
reset_spec = write_spec("reset", epochs=1)
j1 = reset.cli_json("submit", "--spec", reset_spec)["job"]["id"]
vtpy.check(reset.wait_state(j1, ["succeeded", "failed"], timeout=120)["state"] == "succeeded",
           "the first store's job 1")
reset.stop()
shutil.rmtree(reset.state)
reset.start()
raw = reset.raw()  # (vggtune submit refuses any finished model there)
j1b = raw.request({"op": "submit", "job": json.load(open(reset_spec))})["job"]
raw.close()
vtpy.check(j1b["id"] == j1 == 1, f"job numbers after a new store: {j1} then {j1b['id']}")
j1b = reset.wait_state(j1b["id"], ["succeeded", "failed"], timeout=120)
vtpy.check(j1b["state"] == "failed" and
           "holds the model of job 1 of another job store" in j1b.get("error", ""),
           f"a new store's job 1 over the old store's job 1 model: {j1b}")
reset.stop()
# Files of the user's own that carry an output's name are not an earlier
# job's outputs: taking the directory over (which deletes those) needs
# --overwrite, and other files are left alone either way.
mine = os.path.join(TMP, "out", "mine")
os.makedirs(mine)
for name, body in (("model.safetensors", "my own model"), ("metrics.csv", "x,y\n1,2\n"),
                   ("notes.txt", "keep")):
    with open(os.path.join(mine, name), "w") as f:
        f.write(body)
j = d.cli_json("submit", "--spec", write_spec("mine", epochs=1))["job"]["id"]
j = d.wait_state(j, ["failed", "succeeded"], timeout=120)
vtpy.check(j["state"] == "failed" and
           "holds a model.safetensors that vggtune did not write" in j.get("error", ""),
           f"a user's own files in the output: {j}")
vtpy.check(open(os.path.join(mine, "model.safetensors")).read() == "my own model" and
           open(os.path.join(mine, "metrics.csv")).read() == "x,y\n1,2\n",
           "a refused job deleted the user's files")
j = d.cli_json("submit", "--spec", write_spec("mine", epochs=1), "--overwrite")["job"]["id"]
vtpy.check(d.wait_state(j, ["failed", "succeeded"], timeout=120)["state"] == "succeeded" and
           open(os.path.join(mine, "notes.txt")).read() == "keep",
           "with --overwrite the job replaces them and leaves the other files")
# The outputs get the permissions the submitting user's umask gives (the
# daemon's own is 022): with umask 077, a private folder and files.
old_mask = os.umask(0o077)
try:
    j = d.cli_json("submit", "--spec", write_spec("private", epochs=1))["job"]["id"]
finally:
    os.umask(old_mask)
vtpy.check(d.wait_state(j, ["failed", "succeeded"], timeout=120)["state"] == "succeeded",
           "the job with umask 077")
priv = os.path.join(TMP, "out", "private")
modes = {n: os.stat(os.path.join(priv, n)).st_mode & 0o777 for n in os.listdir(priv)}
vtpy.check(os.stat(priv).st_mode & 0o777 == 0o700 and modes and
           all(m == 0o600 for m in modes.values()),
           f"outputs of a user with umask 077: {oct(os.stat(priv).st_mode)} {modes}")
# ... and an output folder made in a setgid (project) folder stays setgid.
sgid = os.path.join(TMP, "sgid")
os.makedirs(sgid)
os.chmod(sgid, 0o2775)
with open(os.path.join(TMP, "sgid.json"), "w") as f:
    json.dump(job_spec(DATA, os.path.join(sgid, "o"), epochs=1), f)
j = d.cli_json("submit", "--spec", os.path.join(TMP, "sgid.json"))["job"]["id"]
vtpy.check(d.wait_state(j, ["failed", "succeeded"], timeout=120)["state"] == "succeeded" and
           os.stat(os.path.join(sgid, "o")).st_mode & 0o2000,
           f"an output folder in a setgid folder: {oct(os.stat(os.path.join(sgid, 'o')).st_mode)}")
# An earlier bottleneck job's features file is recognised whatever the size
# of its header (its file lists grow with the dataset: 17 MB here, over
# what a header is read for metadata), and replaced without --overwrite.
bigbn = os.path.join(TMP, "out", "bigbn")
os.makedirs(bigbn)
hdr = json.dumps({"__metadata__": {"format": "vggtune-bottleneck-features-1",
                                    "train_files": "x" * 17_000_000}},
                 separators=(",", ":")).encode()
hdr += b" " * (-len(hdr) % 8)
with open(os.path.join(bigbn, "bottleneck_features.safetensors"), "wb") as f:
    f.write(len(hdr).to_bytes(8, "little") + hdr)
j = d.cli_json("submit", "--spec", write_spec("bigbn", epochs=1))["job"]["id"]
vtpy.check(d.wait_state(j, ["failed", "succeeded"], timeout=120)["state"] == "succeeded" and
           not os.path.exists(os.path.join(bigbn, "bottleneck_features.safetensors")),
           "an earlier job's features file with a large header")
# A FIFO where the model would be: vggtune submit refuses it, and the job
# fails (opening it would wait for a writer forever, and with it every job
# on the device).
fifo_out = os.path.join(TMP, "out", "fifo")
os.makedirs(fifo_out)
os.mkfifo(os.path.join(fifo_out, "model.safetensors"))
r = d.cli("submit", "--spec", write_spec("fifo", epochs=1), check=False)
vtpy.check(r.returncode == 2 and "not a regular file" in r.stderr,
           f"vggtune submit, a FIFO in place of the model: {r.returncode} {r.stderr!r}")
raw = d.raw()
ff = raw.request({"op": "submit", "job": job_spec(DATA, fifo_out, epochs=1)})["job"]["id"]
raw.close()
ff = d.wait_state(ff, ["failed", "succeeded"], timeout=60)
vtpy.check(ff["state"] == "failed" and "not a regular file" in ff.get("error", ""),
           f"a FIFO in place of the model: {ff}")
# An output folder inside the data would be trained on as one more class:
# the client refuses it, and a document that reaches the daemon anyway
# fails when the job starts (the paths are looked up then, as the user).
raw = d.raw()
rep = raw.request({"op": "submit", "job": job_spec(DATA, os.path.join(DATA, "train", "run"))})
raw.close()
inside = d.wait_state(rep["job"]["id"], ["failed", "succeeded"], timeout=60)
vtpy.check(inside["state"] == "failed" and "is inside data.train" in inside["error"] and
           not os.path.exists(os.path.join(DATA, "train", "run")),
           f"output inside the data: {inside}")
# A data folder whose name is not UTF-8 trained to the end and then failed,
# the model's metadata (the job document) taking only UTF-8: refused now
# before training, by vggtuned run (a usage error) and, for a document that
# reaches the daemon anyway, when the job starts.
latin1 = os.path.join(TMP.encode(), b"caf\xe9")
shutil.copytree(os.path.join(DATA, "train").encode(), latin1)
doc = json.dumps(job_spec(DATA, os.path.join(TMP, "out", "latin1"))).encode()
doc = doc.replace(json.dumps(os.path.join(DATA, "train")).encode(), b'"' + latin1 + b'"')
with open(os.path.join(TMP, "latin1.json"), "wb") as f:
    f.write(doc)
r = subprocess.run([VGGTUNED, "run", "--backend", "cpu", os.path.join(TMP, "latin1.json")],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
vtpy.check(r.returncode == 2 and b"data.train is not valid UTF-8" in r.stderr and
           b"epoch" not in r.stderr, f"vggtuned run of a non-UTF-8 folder: {r}")
raw = d.raw()
raw.send_raw(b'{"id":99,"op":"submit","job":' + doc + b'}\n')
rep = raw.read()
raw.close()
latin1_job = d.wait_state(rep["job"]["id"], ["failed", "succeeded"], timeout=60)
vtpy.check(latin1_job["state"] == "failed" and latin1_job.get("epochs_done", 0) == 0 and
           "data.train is not valid UTF-8" in latin1_job["error"],
           f"a non-UTF-8 folder submitted to the daemon: {latin1_job}")
# So was a class folder of such a name (the model records the class names):
# the job fails as it reads its data, naming the folder.
latin1_class = os.path.join(TMP, "latin1-class")
shutil.copytree(os.path.join(DATA, "train"), latin1_class)
os.rename(os.path.join(latin1_class, first_class).encode(),
          os.path.join(latin1_class.encode(), b"caf\xe9"))
r = subprocess.run([VGGTUNED, "run", "--backend", "cpu",
                    write_spec("latin1-class", epochs=1,
                               data={"train": latin1_class, "val": None, "val_split": 0.3})],
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
vtpy.check(r.returncode == 1 and b"class folder 'caf\xe9' in " in r.stderr and
           b"is not valid UTF-8" in r.stderr and b"epoch 1" not in r.stderr,
           f"vggtuned run of a non-UTF-8 class folder: {r}")

# ---- two jobs at once ---------------------------------------------------------
# A long job and a short one submitted back to back.  Run one after the other,
# the short one would finish last; interleaved step by step, it finishes first.
# (Epoch end times come from the daemon, so no polling race decides this.)
ids = [d.cli_json("submit", "--spec", write_spec(f"pair{i}", seed=i + 1, epochs=e))["job"]["id"]
       for i, e in enumerate((12, 2))]
pair = [d.wait_state(i, ["succeeded", "failed", "cancelled"], timeout=300) for i in ids]
vtpy.check(all(j["state"] == "succeeded" for j in pair), f"both jobs should succeed: {pair}")
end = [j["metrics"][-1]["time"] for j in pair]
vtpy.check(end[1] < end[0], f"the short job (ended {end[1]:.2f}) should end before the long one "
           f"(ended {end[0]:.2f}): the two jobs did not run at the same time")

# ---- a job reading its data holds up no other -------------------------------------
# The walk of the data folders and the probe of every image header (minutes
# for a large tree on a network file system) run on a thread of the job's
# own, while the device goes on with the other jobs.  VT_TEST_READ_HOLD=DIR
# holds the reading of a job named N for as long as DIR/N exists.
holds = os.path.join(TMP, "read-holds")
os.makedirs(holds)


def hold(name):
    open(os.path.join(holds, name), "w").close()


def release(name):
    os.unlink(os.path.join(holds, name))
    if os.path.exists(os.path.join(holds, name + ".held")):  # (for a later hold)
        os.unlink(os.path.join(holds, name + ".held"))


def wait_held(name):
    """Waits until the job named name waits in its reading."""
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(holds, name + ".held")):
        vtpy.before(deadline, f"job {name} did not begin reading")
        time.sleep(0.05)


rd = Daemon(a.build, TMP, name="reading", env=dict(os.environ, VT_TEST_READ_HOLD=holds))
hold("held")
held = rd.cli_json("submit", "--spec", write_spec("held", epochs=1))["job"]["id"]
rd.wait_state(held, ["running"])
wait_held("held")
free = rd.cli_json("submit", "--spec", write_spec("free", epochs=2))["job"]["id"]
freed = rd.wait_state(free, ["succeeded", "failed", "cancelled"], timeout=120)
h = rd.cli_json("status", str(held))["job"]
vtpy.check(freed["state"] == "succeeded" and h["state"] == "running" and h["epochs_done"] == 0,
           f"a job reading its data held up another: {freed['state']}, {h}")
# Cancelled while it reads: at once, leaving no output folder behind, even
# with its reader stuck (the hold, like a call on a dead mount, does not
# see the stop); released later, the reader ends by itself, and another
# job with the same output folder runs.
hold("held2")
held2 = rd.cli_json("submit", "--spec", write_spec("held2", epochs=1))["job"]["id"]
rd.wait_state(held2, ["running"])
wait_held("held2")
t0 = time.time()
rd.cli("cancel", str(held2))
rd.wait_state(held2, ["cancelled"], timeout=30)
vtpy.check(time.time() - t0 < 10 and not os.path.exists(os.path.join(TMP, "out", "held2")),
           f"cancel while reading: {time.time() - t0:.1f}s, output left: "
           f"{os.path.exists(os.path.join(TMP, 'out', 'held2'))}")
vtpy.check(rd.cli("status").returncode == 0, "the daemon should answer beside a stuck reader")
release("held2")
again = rd.cli_json("submit", "--spec", write_spec("held2", epochs=1))["job"]["id"]
vtpy.check(rd.wait_state(again, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job in the output folder of one cancelled while reading")


def cancel_while_held(name, at, what, *submit_args):
    """Job `name` (one epoch; submit_args: the client's other options)
    held at `at` on its writing thread: another job succeeds meanwhile,
    and a cancel is under way until the hold is released, then done."""
    hold(at)
    j = rd.cli_json("submit", "--spec", write_spec(name, epochs=1), *submit_args)["job"]["id"]
    wait_held(at)
    beside = rd.cli_json("submit", "--spec", write_spec("beside-" + name, epochs=1))["job"]["id"]
    vtpy.check(rd.wait_state(beside, ["succeeded", "failed", "cancelled"], timeout=120)["state"]
               == "succeeded", f"a job beside one {what} should succeed")
    c = rd.cli_json("cancel", str(j))["job"]
    vtpy.check(c["state"] == "running" and c["cancel_requested"], f"cancel {what}: {c}")
    release(at)
    vtpy.check(rd.wait_state(j, ["cancelled"], timeout=30)["state"] == "cancelled",
               f"a job cancelled {what} should end cancelled")


# Before the data, the output folder is made, probed for writing and its
# files' writers read, on the job's writing thread too: a folder on a dead
# mount (held by its name + ".output") holds up no other job.  A cancel
# meanwhile is under way until the check returns (it may be making the
# folder), then the job ends and removes the folder it made.
cancel_while_held("held5", "held5.output", "while its output folder is checked")
vtpy.check(not os.path.exists(os.path.join(TMP, "out", "held5")),
           "a job cancelled while its output folder was checked left the folder")
# After the data, the takeover of the folder (an earlier job's outputs
# moved aside) runs on the writing thread too (held by the folder's name +
# ".takeover"); cancelled there, the job puts the earlier model back.
# The parameters (seconds of He initialisation for a scratch job with a
# large head) are made on the writing thread too, by the job's name +
# ".params".
cancel_while_held("held6", "held6.params", "while its parameters are made")
vtpy.check(not os.path.exists(os.path.join(TMP, "out", "held6")),
           "a job cancelled while its parameters were made left its output folder")
with open(os.path.join(TMP, "out", "free", "model.safetensors"), "rb") as f:
    free_model = f.read()
cancel_while_held("free", "free.takeover", "while taking over its output folder", "--overwrite")
with open(os.path.join(TMP, "out", "free", "model.safetensors"), "rb") as f:
    vtpy.check(f.read() == free_model, "the model a cancelled takeover moved aside is put back")
def wait_training(job):
    deadline = time.time() + 120
    while (rd.cli_json("status", str(job))["job"].get("progress") or {}).get("phase") != \
            "training":
        vtpy.before(deadline, f"job {job} did not begin training")
        time.sleep(0.05)


# A job that ends without success puts its output folder in order (what it
# replaced put back, a folder it made removed) on its writing thread too
# (held by its name + ".discard"): a cancel is under way meanwhile.
hold("free.discard")
takeover = rd.cli_json("submit", "--spec", write_spec("free", epochs=300),
                       "--overwrite")["job"]["id"]
wait_training(takeover)  # (the takeover done: the earlier model is aside)
c = rd.cli_json("cancel", str(takeover))["job"]
wait_held("free.discard")
vtpy.check(c["state"] == "running" and c["cancel_requested"],
           f"cancel while what a job replaced is put back: {c}")
beside = rd.cli_json("submit", "--spec", write_spec("beside-discard", epochs=1))["job"]["id"]
vtpy.check(rd.wait_state(beside, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job beside one putting back what it replaced should succeed")
release("free.discard")
vtpy.check(rd.wait_state(takeover, ["cancelled"], timeout=30)["state"] == "cancelled",
           "a job cancelled while putting back what it replaced should end cancelled")
with open(os.path.join(TMP, "out", "free", "model.safetensors"), "rb") as f:
    vtpy.check(f.read() == free_model, "the model a cancelled job replaced is put back")
# That takes a moment as a rule: the cancel is answered with the job's end,
# and its folder is free for the next job at once.
for k in range(3):
    quick = rd.cli_json("submit", "--spec", write_spec(f"quick{k}", epochs=300))["job"]["id"]
    wait_training(quick)
    c = rd.cli_json("cancel", str(quick))["job"]
    r = rd.cli("submit", "--spec", write_spec(f"quick{k}", epochs=1), check=False)
    vtpy.check(c["state"] == "cancelled" and r.returncode == 0,
               f"a cancel, then a job in the same folder: {c['state']}, {r.stderr!r}")
    if r.returncode == 0:
        again = int(re.search(r"submitted job (\d+)", r.stdout).group(1))
        vtpy.check(rd.wait_state(again, ["succeeded", "failed", "cancelled"], timeout=120)
                   ["state"] == "succeeded", "a job in the folder of one just cancelled")
# A cancel while an epoch end's files are written waits for them (as a
# rule a moment; here held 0.4 s): it is answered with the job's end, not
# "cancelling".
hold("metrics.jsonl")
ew = rd.cli_json("submit", "--spec", write_spec("endwrite", epochs=3))["job"]["id"]
wait_held("metrics.jsonl")
threading.Timer(0.4, release, ["metrics.jsonl"]).start()
c = rd.cli_json("cancel", str(ew))["job"]
vtpy.check(c["state"] == "cancelled" and not os.path.exists(os.path.join(holds, "metrics.jsonl")),
           f"a cancel while an epoch end's files are written: {c}")
# Two spellings of one new output folder (a symbolic link): the job that
# made it (held before its claim) is refused once the other has claimed
# it, and removes nothing of the other's.
os.makedirs(os.path.join(TMP, "race-base"))
os.symlink(os.path.join(TMP, "race-base"), os.path.join(TMP, "race-link"))
race_out = os.path.join(TMP, "race-base", "out")
hold("race-a.output")
race_a = rd.cli_json("submit", "--spec", write_spec(
    "race-a", epochs=1, output=os.path.join(TMP, "race-link", "out")))["job"]["id"]
wait_held("race-a.output")
hold("race-b")
race_b = rd.cli_json("submit", "--spec",
                     write_spec("race-b", epochs=1, output=race_out))["job"]["id"]
wait_held("race-b")
release("race-a.output")
ra = rd.wait_state(race_a, ["succeeded", "failed", "cancelled"], timeout=30)
vtpy.check(ra["state"] == "failed" and f"where job {race_b} writes" in ra.get("error", "") and
           os.path.isdir(race_out),
           f"the job refused another's output folder: {ra}; folder there: "
           f"{os.path.isdir(race_out)}")
release("race-b")
vtpy.check(rd.wait_state(race_b, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "the job that claimed the folder first should succeed")
# A job that has ended holds its folder until it is put back in order (a
# removed folder's inode number may be a new folder's): a job claiming it
# meanwhile, under another name, waits for that end and runs.
os.makedirs(os.path.join(TMP, "wait-base"))
os.symlink(os.path.join(TMP, "wait-base"), os.path.join(TMP, "wait-link"))
hold("wait-a.discard")
wait_a = rd.cli_json("submit", "--spec", write_spec(
    "wait-a", epochs=300, output=os.path.join(TMP, "wait-base", "out")))["job"]["id"]
wait_training(wait_a)
rd.cli("cancel", str(wait_a))
wait_held("wait-a.discard")
wait_b = rd.cli_json("submit", "--spec", write_spec(
    "wait-b", epochs=1, output=os.path.join(TMP, "wait-link", "out")))["job"]["id"]
time.sleep(1)
vtpy.check(rd.cli_json("status", str(wait_b))["job"]["state"] == "running",
           "a job claiming the folder of one that has ended should wait for it")
release("wait-a.discard")
wa = rd.wait_state(wait_a, ["cancelled"], timeout=30)
wb = rd.wait_state(wait_b, ["succeeded", "failed", "cancelled"], timeout=120)
vtpy.check(wa["state"] == "cancelled" and wb["state"] == "succeeded",
           f"the job that waited for a folder's put-back should succeed: {wa['state']}, {wb}")
# Once read, it trains.  A watcher sees the image headers counted while
# they are read (48 training and 12 validation images), in epoch 1.
wr = Raw(rd.socket)
wr.send({"op": "watch", "job": held})
release("held")
reading = []
while (m := wr.read()) is not None and m.get("event") != "end":
    if m.get("event") == "progress" and m["progress"]["phase"] == "preparing":
        reading.append(m["progress"])
wr.close()
vtpy.check(m and m["job"]["state"] == "succeeded",
           f"the held job should succeed once its data is read: {m}")
vtpy.check(reading and reading[-1]["steps"] == 60 and reading[-1]["step"] == 60 and
           all(p["epoch"] == 1 and p["epochs"] == 1 for p in reading),
           f"progress while the headers are read: {reading}")
# SIGTERM while a job reads (its reader stuck): a prompt stop, and the job
# runs after the restart.
hold("held3")
held3 = rd.cli_json("submit", "--spec", write_spec("held3", epochs=1))["job"]["id"]
rd.wait_state(held3, ["running"])
wait_held("held3")
rc, secs = rd.stop()
vtpy.check(rc == 0 and secs < 30, f"SIGTERM while a job reads: exit {rc} after {secs:.1f}s")
release("held3")
rd.start()
vtpy.check(rd.wait_state(held3, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job stopped while reading should run after the restart")
# SIGTERM while a job's output folder is checked: the stop waits for the
# check (as for a write), and the job runs after the restart.
hold("held6.output")
held6 = rd.cli_json("submit", "--spec", write_spec("held6", epochs=1))["job"]["id"]
wait_held("held6.output")
rd.proc.send_signal(signal.SIGTERM)
time.sleep(1)
vtpy.check(rd.proc.poll() is None, "the daemon should wait for an output folder's check")
release("held6.output")
vtpy.check(rd.wait_exit("SIGTERM while an output folder is checked", timeout=60) == 0,
           "the stop after an output folder's check should exit 0")
rd.start()
vtpy.check(rd.wait_state(held6, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job stopped while its output folder was checked should run after "
           "the restart")
rd.stop()


def fg_sigint(name, held, release_after=None, timeout=10, when_held=None, **extra):
    """vggtuned run of a one-epoch job `name` (extra: its document's other
    fields), interrupted with SIGINT while held at `held` (when_held is
    called first; the hold is released release_after seconds later, when
    given); returns its exit status, stdout and stderr."""
    hold(held)
    p = subprocess.Popen([VGGTUNED, "run", "--backend", "cpu",
                          write_spec(name, epochs=1, **extra)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, VT_TEST_READ_HOLD=holds))
    wait_held(held)
    if when_held:
        when_held()
    p.send_signal(signal.SIGINT)
    if release_after is not None:
        time.sleep(release_after)
        release(held)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        vtpy.fail(f"vggtuned run ({name}) did not end within {timeout} s of SIGINT")
    return p.returncode, out, err


# vggtuned run: SIGINT while the data is read ends it at once, as a
# cancelled job (nothing to resume: nothing was trained).
rc, _, err = fg_sigint("fg-held", "fg-held")
vtpy.check(rc == 130 and "interrupted" in err and
           not os.path.exists(os.path.join(TMP, "out", "fg-held")),
           f"vggtuned run, SIGINT while reading: exit {rc}: {err!r}")
release("fg-held")

# ---- a job reading its init model or its checkpoint holds up no other ------------
# The reader reads them too, after the data (held here by the file's name):
# a model on a slow or dead mount must not stop the device thread.
def beside_held(dm, held_job, name, what, epochs_done=0):
    """While job held_job is held (`what`), job `name` trains to its end;
    the held one still runs, with epochs_done epochs (None: any)."""
    j = dm.cli_json("submit", "--spec", write_spec(name, epochs=1))["job"]["id"]
    vtpy.check(dm.wait_state(j, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
               "succeeded", f"a job beside one {what} should succeed")
    h = dm.cli_json("status", str(held_job))["job"]
    vtpy.check(h["state"] == "running" and epochs_done in (None, h["epochs_done"]),
               f"the job {what}: {h}")
    return h


rd.start()
init = os.path.join(TMP, "init-held.safetensors")
shutil.copy(os.path.join(TMP, "out", "held", "model.safetensors"), init)
hold("init-held.safetensors")
ih = rd.cli_json("submit", "--spec", write_spec("init-held", epochs=1, init=init))["job"]["id"]
wait_held("init-held.safetensors")
beside_held(rd, ih, "beside-init", "reading its init model")
release("init-held.safetensors")
vtpy.check(rd.wait_state(ih, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "the job held reading its init model should succeed once released")
w = rd.cli("watch", str(ih)).stdout
vtpy.check(re.search(r"initialised \d+ tensors from " + re.escape(init), w),
           f"the init model's log: {w[-600:]!r}")
# An image found unreadable is named with the reason its header's read
# gave, not read again on the device thread: fixed while the job was held
# (after the probe, in its init model's read), it is still named with it.
ndata = os.path.join(TMP, "named-data")
shutil.copytree(DATA, ndata)
bad = os.path.join(ndata, "train", sorted(os.listdir(os.path.join(ndata, "train")))[0],
                   "zz-bad.jpg")
with open(bad, "w") as f:
    f.write("not an image")
shutil.copy(init, os.path.join(TMP, "init-named.safetensors"))
with open(os.path.join(TMP, "named.json"), "w") as f:
    json.dump(job_spec(ndata, os.path.join(TMP, "out", "named"), epochs=1,
                       init=os.path.join(TMP, "init-named.safetensors")), f)
hold("init-named.safetensors")
nj = rd.cli_json("submit", "--spec", os.path.join(TMP, "named.json"))["job"]["id"]
wait_held("init-named.safetensors")
shutil.copy(imgs[0], bad)
release("init-named.safetensors")
vtpy.check(rd.wait_state(nj, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "the job with an unreadable image")
w = rd.cli("watch", str(nj)).stdout
vtpy.check(f"skipping unreadable training image {bad}: " in w and "cannot be read" not in w,
           f"the unreadable image, named with its reason: {w[-600:]!r}")
# Stopped after an epoch (SIGTERM checkpoints it) and held in reading its
# checkpoint after the restart: another job trains to its end meanwhile.
ck = rd.cli_json("submit", "--spec", write_spec("ckpt-held", epochs=300))["job"]["id"]
deadline = time.time() + 120
while rd.cli_json("status", str(ck))["job"]["epochs_done"] < 1:
    vtpy.before(deadline, "the long job did not finish an epoch")
    time.sleep(0.05)
rc, _ = rd.stop()
vtpy.check(rc == 0 and os.path.exists(os.path.join(rd.state, "checkpoints", f"{ck}.safetensors")),
           f"SIGTERM should checkpoint the long job (exit {rc})")
hold(f"{ck}.safetensors")
rd.start()
wait_held(f"{ck}.safetensors")
h = beside_held(rd, ck, "beside-ckpt", "reading its checkpoint", epochs_done=None)
vtpy.check(h["epochs_done"] >= 1 and h["progress"]["phase"] == "preparing",
           f"the job held reading its checkpoint: {h}")
release(f"{ck}.safetensors")
deadline = time.time() + 120
while (h := rd.cli_json("status", str(ck))["job"])["progress"]["phase"] == "preparing":
    vtpy.before(deadline, f"the released job did not resume: {h}")
    time.sleep(0.05)
rd.cli("cancel", str(ck))
rd.wait_state(ck, ["cancelled"])
w = rd.cli("watch", str(ck), check=False).stdout
vtpy.check("resumed from checkpoint" in w, f"the released job's log: {w[-600:]!r}")
rd.stop()

# ---- a job writing its epoch's files holds up no other ---------------------------
# The metrics, keep_best's model, the bottleneck features and the
# checkpoint of an epoch end are written on a thread of their own (held
# here by the checkpoint's name; VT_CHECKPOINT_EST_BPS: one every epoch).
wd = Daemon(a.build, TMP, name="writes",
            env=dict(os.environ, VT_TEST_READ_HOLD=holds, VT_CHECKPOINT_EST_BPS="1e15"))
hold("1.safetensors")  # (the first job's checkpoint)
wj = wd.cli_json("submit", "--spec", write_spec("write-held", epochs=2))["job"]["id"]
vtpy.check(wj == 1, f"the first job of a new daemon: {wj}")
wait_held("1.safetensors")
beside_held(wd, wj, "beside-write", "writing its first epoch's files")
release("1.safetensors")
vtpy.check(wd.wait_state(wj, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "the job held writing its files should succeed once released")
rows = [json.loads(x) for x in open(os.path.join(TMP, "out", "write-held", "metrics.jsonl"))]
vtpy.check([r["epoch"] for r in rows] == [1, 2], f"its metrics: {rows}")
# Cancelled while its files are written: the daemon answers meanwhile, and
# the job ends once the write has returned (freeing it sooner would wait
# for the write on the device thread).
hold("3.safetensors")
wj = wd.cli_json("submit", "--spec", write_spec("write-cancel", epochs=3))["job"]["id"]
vtpy.check(wj == 3, f"the third job: {wj}")
wait_held("3.safetensors")
said = wd.cli("cancel", str(wj), timeout=30).stdout
vtpy.check("cancelling job 3" in said, f"cancel while the files are written: {said!r}")
# (it says what the job waits for: its files, not "its current step")
vtpy.check("it is writing its files and stops once they are written" in said,
           f"cancel while the files are written, what it waits for: {said!r}")
h = wd.cli_json("status", str(wj))["job"]
vtpy.check(h["state"] == "running" and h.get("cancel_requested"),
           f"cancelled while writing: it ends once the write has: {h}")
# (a cancel asked again is answered at once too, not once the write returns)
said = wd.cli("cancel", str(wj), timeout=30).stdout
vtpy.check("cancelling job 3" in said, f"cancel again while the files are written: {said!r}")
release("3.safetensors")
vtpy.check(wd.wait_state(wj, ["succeeded", "failed", "cancelled"], timeout=60)["state"] ==
           "cancelled", "the job cancelled while writing its files")
# The epoch its files recorded is the job's too, as when the cancel came
# after the epoch's end.
h = wd.cli_json("status", str(wj))["job"]
vtpy.check(h["epochs_done"] == 1 and [m["epoch"] for m in h["metrics"]] == [1],
           f"a job cancelled while writing its first epoch's files: {h}")
# (what it wrote before the checkpoint stays, as for any job cancelled
# after an epoch; its checkpoint goes)
wc = os.path.join(TMP, "out", "write-cancel")
rows = [json.loads(x) for x in open(os.path.join(wc, "metrics.jsonl"))]
vtpy.check([r["epoch"] for r in rows] == [1] and
           not os.path.exists(os.path.join(wc, "model.safetensors")) and
           not os.listdir(os.path.join(wd.state, "checkpoints")),
           f"a job cancelled while writing: {rows}, {os.listdir(wc)}, "
           f"{os.listdir(os.path.join(wd.state, 'checkpoints'))}")


# ---- a job writing its final model holds up no other ------------------------------
# The final model and class map are written on the job's writing thread
# too (held by the model's name, which every job's finish writes: the job
# beside is a long one, cancelled after its first epoch).
def final_held(name, **extra):
    """Submits a one-epoch job `name` (extra: its document's other fields)
    and waits until its final model's write is held; returns its id."""
    hold("model.safetensors")
    j = wd.cli_json("submit", "--spec", write_spec(name, epochs=1, **extra))["job"]["id"]
    wait_held("model.safetensors")
    return j


def stop_while_held(why):
    """SIGTERM to wd while a write is held, released a second later;
    returns wd's exit status."""
    wd.proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    vtpy.check(wd.proc.poll() is None, f"the daemon should wait for the held write ({why})")
    release("model.safetensors")
    return wd.wait_exit(why, timeout=60)


def final_outputs(name):
    out = os.path.join(TMP, "out", name)
    return all(os.path.exists(os.path.join(out, f)) for f in ("model.safetensors", "classmap.json"))


fj = final_held("final-held")
h = wd.cli_json("status", str(fj))["job"]
vtpy.check(h["state"] == "running" and h["progress"]["phase"] == "saving",
           f"a job writing its final model: {h}")
bj = wd.cli_json("submit", "--spec", write_spec("beside-final", epochs=300))["job"]["id"]
deadline = time.time() + 120
while wd.cli_json("status", str(bj))["job"]["epochs_done"] < 1:
    vtpy.before(deadline, "a job beside one writing its final model did not "
               "finish an epoch: the write holds up the device")
    time.sleep(0.05)
wd.cli("cancel", str(bj))
vtpy.check(wd.wait_state(bj, ["cancelled"], timeout=60)["state"] == "cancelled", "beside-final")
vtpy.check(wd.cli_json("status", str(fj))["job"]["state"] == "running",
           "the job held writing its final model should still run")
release("model.safetensors")
vtpy.check(wd.wait_state(fj, ["succeeded", "failed", "cancelled"], timeout=60)["state"] ==
           "succeeded" and final_outputs("final-held"),
           "the job held writing its final model should succeed once released")
# Cancelled while its final model is written: answered at once; once the
# write has returned the model is complete, and the job succeeds with it
# rather than throw it away.
fj = final_held("final-cancel")
said = wd.cli("cancel", str(fj), timeout=30).stdout
vtpy.check(f"cancelling job {fj}" in said and "a final model written by then is kept" in said,
           f"cancel while the final model is written: {said!r}")
release("model.safetensors")
vtpy.check(wd.wait_state(fj, ["succeeded", "failed", "cancelled"], timeout=60)["state"] ==
           "succeeded" and final_outputs("final-cancel"),
           "a job cancelled while its final model was written should keep it")
w = wd.cli("watch", str(fj)).stdout
vtpy.check("the model was written before the cancel took effect" in w,
           f"the job's log should say why it succeeded: {w[-600:]!r}")
h = wd.cli_json("status", str(fj))["job"]
vtpy.check(not h["cancel_requested"] and "reason" not in h,
           f"a job that succeeded after a cancel has no cancel under way: {h}")
# SIGTERM while the final model is written: the stop waits for the write
# and records the job as succeeded; it does not run again after the restart.
fj = final_held("final-stop")
rc = stop_while_held("SIGTERM while the final model was written")
vtpy.check(rc == 0, f"SIGTERM while the final model was written: exit {rc}")
wd.start()
h = wd.cli_json("status", str(fj))["job"]
vtpy.check(h["state"] == "succeeded" and h["epochs_done"] == 1 and final_outputs("final-stop"),
           f"a job whose final model was written during the stop: {h}")
# Cancelled, then SIGTERM, while its final model is written: it succeeds
# as above, and its log says why, as when the cancel alone ends it.
fj = final_held("final-cancel-stop")
wd.cli("cancel", str(fj), timeout=30)
rc = stop_while_held("SIGTERM after a cancel while the final model was written")
wd.start()
h = wd.cli_json("status", str(fj))["job"]
w = wd.cli("watch", str(fj)).stdout
vtpy.check(rc == 0 and h["state"] == "succeeded" and final_outputs("final-cancel-stop") and
           "the model was written before the cancel took effect" in w,
           f"cancelled, then stopped, while its final model was written: exit {rc}, {h}, "
           f"its log: {w[-600:]!r}")
# SIGTERM while a final model's write fails (its output file system made
# read-only meanwhile): the job fails, as it would have without the stop,
# rather than run again after the restart (writable again by then).  (As
# root: a tmpfs.)
if os.geteuid() == 0:
    rofs = os.path.join(TMP, "final-ro")
    os.makedirs(rofs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", rofs], check=True)
    try:
        fj = final_held("final-ro", output=os.path.join(rofs, "o"))
        subprocess.run(["mount", "-o", "remount,ro", rofs], check=True)
        rc = stop_while_held("SIGTERM while a final model's write failed")
        subprocess.run(["mount", "-o", "remount,rw", rofs], check=True)  # (a rerun would pass)
        wd.start()
        h = wd.cli_json("status", str(fj))["job"]
        vtpy.check(rc == 0 and h["state"] == "failed" and "Read-only" in h.get("error", ""),
                   f"a job whose final model could not be written during the stop: exit {rc}, "
                   f"{h}")
        # vggtuned run likewise: the job failed (exit 1, with the error),
        # it was not interrupted.
        rc, _, err = fg_sigint("fg-final-ro", "model.safetensors", release_after=1,
                               output=os.path.join(rofs, "fg"), when_held=lambda: subprocess.run(
                                   ["mount", "-o", "remount,ro", rofs], check=True))
        vtpy.check(rc == 1 and "failed" in err and "Read-only" in err,
                   f"vggtuned run, SIGINT while its final model's write failed: exit {rc}: "
                   f"{err!r}")
    finally:
        subprocess.run(["umount", rofs])
else:
    print("SKIP part: a final write failing during a stop needs root (a tmpfs)")
wd.stop()
# vggtuned run: SIGINT while the final model is written waits for it and
# reports the job done (exit 0), not interrupted.
rc, out, err = fg_sigint("fg-final", "model.safetensors", release_after=1, timeout=60)
vtpy.check(rc == 0 and "done:" in out and final_outputs("fg-final"),
           f"vggtuned run, SIGINT while its final model is written: exit {rc}: {out!r} {err!r}")

# ---- predictions and evaluations take turns with the jobs -----------------------
# A request reads its model file and its folder on a thread of its own
# (VT_TEST_READ_HOLD holds it by the folder's name, or the first image's),
# then runs a batch at each turn its user gets, between the jobs' steps.
rd.start()
evdir = os.path.join(TMP, "ev-held")
shutil.copytree(os.path.join(DATA, "val"), evdir)
want = rd.cli_json("eval", str(held), evdir)["eval"]
hold("ev-held")
er = Raw(rd.socket)
er.send({"op": "eval", "job": held, "data": evdir})
wait_held("ev-held")
# Meanwhile another job trains to its end and a prediction is answered.
beside = rd.cli_json("submit", "--spec", write_spec("beside-eval", epochs=1))["job"]["id"]
vtpy.check(rd.wait_state(beside, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job beside an evaluation held in its reading should succeed")
pred = rd.cli_json("predict", str(held), imgs[0])["predictions"]
vtpy.check(len(pred) == 1 and pred[0]["image"] == imgs[0] and len(pred[0]["top"]) == 3,
           f"a prediction beside an evaluation held in its reading: {pred}")


def reply(r):
    """The reply to r's request, past its progress events (None when the
    connection closed)."""
    while (m := r.read()) is not None and "ok" not in m:
        pass
    return m


def wait_requests(n):
    """Waits until status counts n requests in progress (the device's
    figures come about once a second)."""
    deadline = time.time() + 20
    while sum(u.get("requests", 0) for u in rd.cli_json("status")["daemon"]["users"]) != n:
        vtpy.before(deadline, f"status should count {n} requests in progress: "
                   f"{rd.cli_json('status')['daemon']['users']}")
        time.sleep(0.2)


# status lists the user with the request in progress
wait_requests(1)
text = rd.cli("status").stdout
vtpy.check("0 + 1 request" in text, f"status text with a request in progress: {text!r}")
release("ev-held")
m = reply(er)
vtpy.check(m is not None and m.get("ok") and m["eval"] == want,
           f"the held evaluation, once released, should equal one run alone: {m} vs {want}")
er.close()
# A request whose asker has gone (Ctrl-C on vggtune eval) is dropped,
# even while its reader is stuck.
hold("ev-gone")
shutil.copytree(os.path.join(DATA, "val"), os.path.join(TMP, "ev-gone"))
gone = Raw(rd.socket)
gone.send({"op": "eval", "job": held, "data": os.path.join(TMP, "ev-gone")})
wait_held("ev-gone")
wait_requests(1)
gone.close()
wait_requests(0)
release("ev-gone")
# A request whose image read is stuck (held here by the image's name, as
# a dead mount would hold it) holds up no one: its turns pass while its
# batch is not decoded, and another job trains to its end meanwhile.
stuck = os.path.join(TMP, "stuck.jpg")
shutil.copy(imgs[0], stuck)
hold("stuck.jpg")
ps = Raw(rd.socket)
ps.send({"op": "predict", "job": held, "images": [imgs[1], stuck]})
wait_held("stuck.jpg")
beside = rd.cli_json("submit", "--spec", write_spec("beside-stuck", epochs=1))["job"]["id"]
vtpy.check(rd.wait_state(beside, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
           "succeeded", "a job beside a prediction stuck reading an image should succeed")
release("stuck.jpg")
m = reply(ps)
vtpy.check(m is not None and m.get("ok") and [p["image"] for p in m["predictions"]] ==
           [imgs[1], stuck] and all("top" in p for p in m["predictions"]),
           f"the stuck prediction, once its read returned: {m}")
ps.close()
# The same for a job: one whose image read is stuck (in its first epoch,
# which decodes) is passed over while another job trains to its end.
sdata = os.path.join(TMP, "stuck-data")
shutil.copytree(DATA, sdata)
cls = sorted(os.listdir(os.path.join(sdata, "train")))[0]
shutil.copy(imgs[0], os.path.join(sdata, "train", cls, "zz-stuck.jpg"))


def stuck_beside(dm, tag, what, while_stuck=None):
    """Job `tag` on sdata, held reading its image zz-stuck.jpg: another job
    trains to its end meanwhile (then while_stuck() is checked), and the
    held one succeeds once released."""
    spec = os.path.join(TMP, tag + ".json")
    with open(spec, "w") as f:
        json.dump(job_spec(sdata, os.path.join(TMP, "out", tag), epochs=1), f)
    hold("zz-stuck.jpg")
    sj = dm.cli_json("submit", "--spec", spec)["job"]["id"]
    wait_held("zz-stuck.jpg")
    beside = dm.cli_json("submit", "--spec", write_spec("beside-" + tag, epochs=1))["job"]["id"]
    vtpy.check(dm.wait_state(beside, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
               "succeeded", f"{what}, a job beside one stuck reading an image should succeed")
    vtpy.check(dm.cli_json("status", str(sj))["job"]["state"] == "running",
               f"{what}, the stuck job runs on")
    if while_stuck:
        while_stuck()
    release("zz-stuck.jpg")
    vtpy.check(dm.wait_state(sj, ["succeeded", "failed", "cancelled"], timeout=120)["state"] ==
               "succeeded", f"{what}, the stuck job, once its read returned")


stuck_beside(rd, "stuck-job", "with two decode threads")
# With one decode thread the stuck read holds it, but not the other jobs:
# the pool takes it for stuck and starts a thread beside it.
one = Daemon(a.build, TMP, name="one-thread", extra=["--threads", "1"],
             env=dict(os.environ, VT_TEST_READ_HOLD=holds))
stuck_beside(one, "stuck-1t", "with one decode thread", lambda: vtpy.check(
    "1 more thread started beside them" in one.log_text(),
    f"the stand-in thread is logged: {one.log_text()[-600:]!r}"))
one.stop()
# Two requests of one user are in progress at a time (each holds its
# model); a third starts when one ends.
evs = []
for k in range(3):
    shutil.copytree(os.path.join(DATA, "val"), os.path.join(TMP, f"ev-{k}"))
    hold(f"ev-{k}")
    evs.append(Raw(rd.socket))
    evs[-1].send({"op": "eval", "job": held, "data": os.path.join(TMP, f"ev-{k}")})
    if k < 2:
        wait_held(f"ev-{k}")
time.sleep(1)
vtpy.check(not os.path.exists(os.path.join(holds, "ev-2.held")),
           "a third request of one user should wait for one of the two in progress")
# status counts it as waiting (the device's figures come about once a second)
deadline = time.time() + 20
while (rq := rd.cli_json("status")["daemon"].get("requests")) != {"running": 2, "waiting": 1}:
    vtpy.before(deadline, f"status should count 2 requests and 1 waiting: {rq}")
    time.sleep(0.2)
text = rd.cli("status").stdout
vtpy.check("requests   2 in progress, 1 waiting (predict, eval)" in text,
           f"status text with a request waiting: {text!r}")
release("ev-0")
wait_held("ev-2")
m = reply(evs[0])
vtpy.check(m is not None and m.get("ok") and m["eval"] == want, f"the first of three: {m}")
# SIGTERM while requests read (their readers stuck) and one waits to
# start: a prompt stop, and each answered EBUSY.
evs.append(Raw(rd.socket))
evs[-1].send({"op": "eval", "job": held, "data": evdir})
vtpy.check(evs[-1].request({"op": "status"})["ok"], "status")  # (the eval is on its way)
rc, secs = rd.stop()
vtpy.check(rc == 0 and secs < 30, f"SIGTERM while evals read: exit {rc} after {secs:.1f}s")
for r in evs[1:]:
    expect_error(reply(r), "EBUSY", "stopping")
    r.close()
release("ev-1")
release("ev-2")
# A request's network takes device memory, admitted as a job's is: one
# that can never fit is refused with the figure, and one that does not fit
# beside another request waits for it.  (The CPU backend counts its
# tensors as the device's memory.)
base_args = list(rd.args)
rd.start()
mem = rd.cli_json("status")["daemon"]["memory"]
room = (mem["total"] - mem["in_use"]) // 2**20  # MiB jobs could have without a reserve
rd.stop()
rd.args = base_args + ["--reserve-mb", str(room)]
rd.start()
r = Raw(rd.socket)
m = r.request({"op": "eval", "job": held, "data": evdir})
expect_error(m, "ETOOBIG", "needs about")
need = float(m["error"]["message"].split("needs about ")[1].split(" MiB")[0])
r.close()
rd.stop()
rd.args = base_args + ["--reserve-mb", str(int(room - 1.5 * need))]
rd.start()
big = make_data(a.build, os.path.join(TMP, "big"), per_class=150, val=1)
ea, eb = Raw(rd.socket, timeout=300), Raw(rd.socket, timeout=300)
hold("ev-held")
aid = ea.send({"op": "eval", "job": held, "data": os.path.join(big, "train")})
eb.send({"op": "eval", "job": held, "data": evdir})
wait_held("ev-held")
# (the first one's network is on the device once it has run a batch: its
# first progress event, due at once)
first = ea.read()
if not first or first.get("event") != "progress":
    vtpy.fail(f"the first request's first batch: {first}")
release("ev-held")
mb = reply(eb)
# What the first has sent by then: its progress events, and its reply
# (or not yet, without the wait).
ea.s.settimeout(0.05)
ma, seen = None, [first["progress"]]
try:
    while not ma and (m := ea.read()) is not None:
        if "ok" in m:
            ma = m
        else:
            vtpy.check(m.get("id") == aid and m.get("event") == "progress",
                       f"before the reply: {m}")
            seen.append(m["progress"])
except socket.timeout:
    pass
vtpy.check(ma is not None and ma.get("ok") and ma["eval"]["n"] == 450,
           f"the request that fits only once the other has ended answered first: {mb}")
vtpy.check(mb is not None and mb.get("ok") and mb["eval"] == want, f"the one that waited: {mb}")
# A large request tells its client how far it has got, before the reply.
vtpy.check(seen and all(p["phase"] == "evaluating" and p["steps"] == 450 for p in seen) and
           [p["step"] for p in seen] == sorted(p["step"] for p in seen) and
           seen[-1]["step"] > 0, f"progress of an eval: {seen}")
ea.close()
eb.close()
rd.stop()
rd.args = base_args
# A request that reaches the device after its loop has ended (the daemon
# stopping: jobs checkpointing, held here after that) is answered EBUSY
# too, not left without a reply until the connection closes.
rd.start()
late = Raw(rd.socket)
hold(".vggtuned-stopped")
rd.proc.send_signal(signal.SIGTERM)
wait_held(".vggtuned-stopped")
late.send({"op": "predict", "job": held, "images": [imgs[0]]})
vtpy.check(late.request({"op": "status"})["ok"], "status")  # (the predict is on its way)
release(".vggtuned-stopped")
expect_error(reply(late), "EBUSY", "stopping")
late.close()
vtpy.check(rd.wait_exit("SIGTERM with a request after the device's loop", timeout=60) == 0,
           "exit status after SIGTERM")

# ---- bad input ------------------------------------------------------------------
r = Raw(d.socket, hello=False)
expect_error(r.request({"op": "list"}), "EPROTO", "hello first")
expect_error(r.request({"op": "hello", "version": 99}), "EPROTO", "version")
r.send_raw(b"this is not json\n")
expect_error(r.read(), "EPROTO")
r.send_raw(b'{"id": 5}\n')
expect_error(r.read(), "EPROTO", "op")
r.send_raw(b'[1,2,3]\n')
expect_error(r.read(), "EPROTO")
r.close()

r = Raw(d.socket)
expect_error(r.request({"op": "frobnicate"}), "EINVAL", "unknown op")
expect_error(r.request({"op": "job", "job": "one"}), "EINVAL", "job")
expect_error(r.request({"op": "job", "job": 99999}), "ENOTFOUND", "no job 99999")
expect_error(r.request({"op": "submit", "job": {"data": {"train": DATA}}}), "EINVAL", "output")
expect_error(r.request({"op": "submit", "job": {"data": {"train": "rel/dir"}, "output": "/o"}}),
             "EINVAL", "absolute")
expect_error(r.request({"op": "submit", "job": {"data": {"train": DATA}, "output": "/o",
                                                "optimizer": {"lr": "fast"}}}),
             "EINVAL", "optimizer.lr")
expect_error(r.request({"op": "predict", "job": long_id, "images": [imgs[0]]}), "ESTATE",
             f"job {long_id} was cancelled, so it has no model")
expect_error(r.request({"op": "predict", "job": over["id"], "images": ["relative.jpg"]}),
             "EINVAL")
r.close()

# A job that can never fit is refused, and the advice names what dominates
# the estimate: here the head (seven 65536-wide layers on 1024x1024 input,
# about 0.7 TiB with gradients and momentum), not the batch.
r = d.cli("submit", "--spec", write_spec("hugehead", head={"dense": [65536] * 7},
                                         data={"image_size": 1024}), check=False)
vtpy.check(r.returncode == 1 and "of device memory" in r.stderr and
           "use narrower head.dense layers" in r.stderr and "batch_size" not in r.stderr,
           f"a head too large for the device: {r.stderr!r}")

# Data that is not there: the client refuses it before it is queued (a usage
# error) ...
r = d.cli("submit", "--spec", write_spec("nodata", data={"train": "/nonexistent/x",
                                                         "val": None}), check=False)
vtpy.check(r.returncode == 2 and "--data /nonexistent/x: no such directory" in r.stderr,
           f"submitting missing data: {r.returncode} {r.stderr!r}")
# ... and a document that reaches the daemon anyway fails with a message that
# says why, taking back the (empty) output directory the job made.
r = Raw(d.socket)
bad = r.request({"op": "submit", "job": job_spec("/nonexistent", os.path.join(TMP, "out",
                                                                              "nodata"))})
r.close()
j = d.wait_state(bad["job"]["id"], ["failed"], timeout=60)
vtpy.check("/nonexistent/train" in j.get("error", ""), f"failed job error: {j}")
vtpy.check(not os.path.exists(os.path.join(TMP, "out", "nodata")),
           "a job that failed before writing anything left its output directory behind")
r = d.cli("watch", str(bad["job"]["id"]), check=False)
vtpy.check(r.returncode == 1 and "/nonexistent/train" in r.stderr,
           f"watch of failed: {r.stderr!r}")

# A frame over the limit: error reply, then the connection is closed.
r = Raw(d.socket)
r.send_raw(b'{"id": 1, "op": "status", "pad": "' + b"x" * (1 << 20) + b'"}\n')
m = r.read()
expect_error(m, "ETOOBIG")
vtpy.check(r.read() is None, "the daemon should close after an oversized frame")
r.close()

# A client that connects and says nothing, one that vanishes mid-request.
idle = socket.socket(socket.AF_UNIX)
idle.connect(d.socket)
gone = Raw(d.socket)
gone.send({"op": "predict", "job": 1, "images": imgs})
gone.close()
half = socket.socket(socket.AF_UNIX)
half.connect(d.socket)
half.sendall(b'{"id": 1, "op": "hel')
half.close()

# A client that floods requests and never reads the replies is cut off once
# its output passes the hard limit; the daemon's memory stays bounded.
rss0 = d.rss_kib()
flood = socket.socket(socket.AF_UNIX)
flood.connect(d.socket)
flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
flood.sendall(b'{"id":0,"op":"hello","version":1}\n')
req = b'{"id":1,"op":"job","job":1}\n'
sent = 0
try:
    flood.settimeout(30)
    for _ in range(20000):
        flood.sendall(req * 10)
        sent += 10
except OSError:
    pass
time.sleep(1)
rss1 = d.rss_kib()
vtpy.check("stopped reading" in d.log_text(), "the flooding client was not disconnected")
# (ThreadSanitizer's shadow memory makes RSS meaningless.  Under ASan, freed
# blocks wait in its quarantine, up to 256 MiB: the ~4600 replies built
# before the cut-off freed 35-50 MiB there when measured, and ~100 MiB once
# on a loaded machine, so ASan gets a wider bound; without the cut-off the
# 200,000 requests' replies would take about 400 MiB.)
limit_mib = {"thread": None, "address": 192}.get(vtpy.sanitizer(a.build), 64)
if limit_mib:
    vtpy.check(rss1 - rss0 < limit_mib * 1024, f"daemon memory grew by {rss1 - rss0} KiB "
               f"under a non-reading client ({sent} requests sent)")
flood.close()
print(f"flood: {sent} requests sent, RSS {rss0} -> {rss1} KiB")

# A slow watcher: never reads a watch stream; the daemon goes on.
slow = Raw(d.socket)
slow_job = d.cli_json("submit", "--spec", write_spec("watched", epochs=3))["job"]["id"]
slow.send({"op": "watch", "job": slow_job})
d.wait_state(slow_job, ["succeeded"], timeout=300)
st = Raw(d.socket).request({"op": "status"})
vtpy.check(st["ok"], "the daemon must still serve after all the bad input")
idle.close()
slow.close()

# ---- the phases a watcher sees ---------------------------------------------------
# A job watched from the queue on: "preparing" as soon as it runs (before
# the trainer's first report), then training, validating (with the
# validation pass's steps) and saving (each epoch's files, then the final
# model), in that order.
ph = Daemon(a.build, TMP, name="phases", extra=["--max-running", "1"])
blocker = ph.cli_json("submit", "--spec", write_spec("blocker", epochs=500))["job"]["id"]
ph.wait_state(blocker, ["running"])
watched = ph.cli_json("submit", "--spec", write_spec("phased", epochs=2))["job"]["id"]
wr = Raw(ph.socket)
wr.send({"op": "watch", "job": watched})
ph.cli("cancel", str(blocker))
phases, progress = [], []
while (m := wr.read()) is not None and m.get("event") != "end":
    if m.get("event") == "progress":
        progress.append(m["progress"])
        if not phases or phases[-1] != m["progress"]["phase"]:
            phases.append(m["progress"]["phase"])
wr.close()
vtpy.check(m and m["job"]["state"] == "succeeded" and
           phases == ["preparing", "training", "validating", "saving", "training", "validating",
                      "saving"],
           f"the phases of a watched job: {phases}")
val = [p for p in progress if p["phase"] == "validating"]
vtpy.check("loss" not in progress[0] and val[-1]["step"] == val[-1]["steps"] == 2 and
           0 < val[-1]["loss"] and all(p["epoch"] in (1, 2) for p in progress),
           f"progress reports: {progress[0]} {val[-1]}")
# The ETA counts what is left: positive while epoch 1 trains and while
# its files are saved (epoch 2 is ahead), nothing once the last
# validation pass is through and while saving.
eta1 = [p["eta_s"] for p in progress if p["phase"] in ("training", "saving") and p["epoch"] == 1]
vtpy.check(eta1 and all(e > 0 for e in eta1) and val[-1]["eta_s"] == 0 and
           [p["epoch"] for p in progress if p["phase"] == "saving"][0] == 1 and
           progress[-1]["phase"] == "saving" and progress[-1]["eta_s"] == 0 and
           all(p.get("eta_s", 0) >= 0 for p in progress), f"ETAs: {progress}")
# A job stopped in its validation pass resumes into it: that pass's steps
# and the estimate of the epochs after it are known there too (they were
# 0: no bar, "ETA 0:00", until the next epoch's training).
vdata = make_data(a.build, os.path.join(TMP, "val-data"), per_class=4, val=80)
vspec = os.path.join(TMP, "val-resume.json")
with open(vspec, "w") as f:
    json.dump(job_spec(vdata, os.path.join(TMP, "out", "val-resume"), epochs=3), f)
vj = ph.cli_json("submit", "--spec", vspec)["job"]["id"]
wr = Raw(ph.socket)
wr.send({"op": "watch", "job": vj})
while (m := wr.read()) is not None and not (
        m.get("event") == "progress" and m["progress"]["phase"] == "validating" and
        m["progress"]["epoch"] == 2 and m["progress"]["step"] >= 2):
    pass
wr.close()
ph.stop()
ph.start()
wr = Raw(ph.socket)
wr.send({"op": "watch", "job": vj})
resumed = []
while (m := wr.read()) is not None and m.get("event") != "end":
    if m.get("event") == "progress":
        resumed.append(m["progress"])
wr.close()
val = next((p for p in resumed if p["phase"] == "validating"), None)
vtpy.check(val and val["epoch"] == 2 and val["steps"] == 30 and val["eta_s"] > 0,
           f"progress resumed into validation: {val}")
# Its end's files are reported being saved, as any epoch's (the watcher
# saw none: right after the validation pass's last step, the trainer's
# "saving" fell to the daemon's throttle).
vtpy.check([p["phase"] for p in resumed if p["epoch"] == 2][-1:] == ["saving"],
           f"the phases of the epoch resumed into validation: {resumed}")
# ... with its training pass's steps, all done (it was step 2 of 0: no bar).
sv = [p for p in resumed if p["epoch"] == 2 and p["phase"] == "saving"]
vtpy.check(sv and sv[-1]["steps"] == 2 and sv[-1]["step"] == 2,
           f"saving, in the epoch resumed into validation: {sv}")
ph.stop()
# vggtuned run on a terminal shows the same phases on its progress line.
master, slave = pty.openpty()
fgp = subprocess.Popen([VGGTUNED, "run", "--backend", "cpu", write_spec("fg-phases", epochs=1)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
os.close(slave)
tty = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # (EIO once the run has closed its side)
        break
    if not chunk:
        break
    tty += chunk
os.close(master)
tty = tty.decode(errors="replace")
vtpy.check(fgp.wait() == 0 and "preparing [####################] 60/60 image headers read" in tty
           and "epoch 1/1 [" in tty and "epoch 1/1 validating [" in tty and
           "val_loss" in tty and "epoch 1/1 saving [" in tty,
           f"vggtuned run's progress line on a terminal: {tty[-600:]!r}")

# ---- a daemon whose device cannot start exits at once, saying why -------------
# (It used to wait forever for a device thread that had already given up.)
bad_state = os.path.join(TMP, "bad-start")
for extra, why in ((["--backend", "cpu", "--weights", "/nonexistent/vgg16.h5"],
                    "/nonexistent/vgg16.h5"),
                   (["--backend", "cuda"], "cuda")):
    cmd = [VGGTUNED, "--socket", os.path.join(bad_state, "s.sock"), "--state-dir", bad_state,
           *extra]
    print("+", " ".join(cmd), flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.terminate()  # it started: --backend cuda on a machine with a usable GPU
        _, err = p.communicate(timeout=60)
        vtpy.check(extra[1] == "cuda" and "ready on" in err, f"{cmd} neither failed nor ran: {err!r}")
        continue
    print(err, end="")
    vtpy.check(p.returncode == 1 and why in err,
               f"vggtuned {' '.join(extra)}: exit {p.returncode}: {err!r}")
    vtpy.check(not os.path.exists(os.path.join(bad_state, "s.sock")),
               "a daemon that failed to start left its socket behind")

# ---- a damaged job database: refused, untouched, with what to do -------------
dmg = os.path.join(TMP, "damaged-state")
os.makedirs(dmg, mode=0o700)
junk = b"this is not an SQLite database, but long enough to look like one\n" * 80
with open(os.path.join(dmg, "jobs.db"), "wb") as f:
    f.write(junk)
p = subprocess.run([VGGTUNED, "--socket", os.path.join(dmg, "s.sock"), "--state-dir", dmg,
                    "--backend", "cpu"], capture_output=True, text=True, timeout=60)
vtpy.check(p.returncode == 1 and f"job store {dmg}/jobs.db is damaged" in p.stderr and
           "restore it from a backup, or move it aside" in p.stderr,
           f"a damaged job database: exit {p.returncode}: {p.stderr!r}")
with open(os.path.join(dmg, "jobs.db"), "rb") as f:
    vtpy.check(f.read() == junk, "the damaged job database was changed")

# ---- a daemon's --weights path that is not UTF-8 -----------------------------
# Every model's metadata names the trunk's file, and takes only UTF-8: such
# a path failed every job as it saved its model.  The name's other bytes are
# now '?' there.
odd_w = os.path.join(TMP, "w").encode() + b"\xe9.safetensors"
shutil.copy(first_model, odd_w)
wd = Daemon(a.build, TMP, name="odd-weights", extra=["--weights", os.fsdecode(odd_w)])
wj = wd.cli_json("submit", "--spec", write_spec("odd-weights", epochs=1))["job"]["id"]
st = wd.wait_state(wj, ["succeeded", "failed", "cancelled"])
vtpy.check(st["state"] == "succeeded", f"a job on a trunk at a non-UTF-8 path: {st}")
wmeta = vtpy.safetensors_meta(os.path.join(TMP, "out", "odd-weights", "model.safetensors"))
vtpy.check(wmeta.get("weights") == "safetensors:" + os.path.join(TMP, "w") + "?.safetensors",
           f"the model names its trunk {wmeta.get('weights')!r}")
wd.stop()

# ---- a second daemon on a taken socket or state directory: a clean refusal ----
# (It used to abort in libuv, after claiming to be ready, when startup failed
# once the device thread was running; and two daemons on one state directory
# both resumed its jobs.)
bad_path = os.path.join(TMP, "afile")
open(bad_path, "w").close()
for sock, state, why in ((d.socket, os.path.join(TMP, "second-state"), "already serving"),
                         (os.path.join(TMP, "second.sock"), d.state,
                          "another vggtuned uses the state directory"),
                         (os.path.join(TMP, "x" * 120 + ".sock"), os.path.join(TMP, "s3"),
                          "socket path too long"),
                         (os.path.join(bad_path, "s.sock"), os.path.join(TMP, "s4"),
                          "not a directory"),
                         (os.path.join(TMP, "no", "such", "s.sock"), os.path.join(TMP, "s5"),
                          "cannot make the socket's folder"),
                         (bad_path, os.path.join(TMP, "s6"), "exists and is not a socket")):
    r = vtpy.run([VGGTUNED, "--backend", "cpu", "--socket", sock, "--state-dir", state],
                 check=False, timeout=60)
    vtpy.check(r.returncode == 1 and why in r.stderr and "ready on" not in r.stderr,
               f"second daemon ({why}): exit {r.returncode}: {r.stderr[-500:]!r}")
vtpy.check(not os.path.exists(os.path.join(TMP, "no")),
           "a mistyped --socket must not leave folders behind")
vtpy.check(os.path.isfile(bad_path), "a --socket naming a file must leave the file alone")
vtpy.check(Raw(d.socket).request({"op": "status"})["ok"] and
           not os.path.exists(os.path.join(TMP, "second.sock")),
           "the first daemon must keep its socket and go on serving")

# ---- 50 concurrent clients ----------------------------------------------------
errors = []
submitted = []


def client(i):
    try:
        if i % 10 == 0:
            r = d.cli_json("submit", "--spec", write_spec(f"many{i}", epochs=1))
            submitted.append(r["job"]["id"])
        elif i % 3 == 0:
            r = d.cli("watch", "1")
            assert r.returncode == 0
        elif i % 3 == 1:
            d.cli_json("list")
        else:
            raw = Raw(d.socket)
            for _ in range(20):
                assert raw.request({"op": "status"})["ok"]
            raw.close()
    except Exception as e:  # noqa: BLE001
        errors.append(f"client {i}: {e!r}")


threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
for t in threads:
    t.start()
for t in threads:
    t.join()
vtpy.check(not errors, f"concurrent clients failed: {errors[:3]}")


def queue_counts():
    """(running, queued) as list shows them and as status shows them, from
    calls between which no job changed state (None if jobs kept moving)."""
    def states():  # (not their progress, which moves several times a second)
        return [(j["id"], j["state"]) for j in d.cli_json("list")["jobs"]]
    for _ in range(20):
        before = states()
        st = d.cli_json("status")["daemon"]
        after = states()
        if before == after:
            lst = tuple(sum(state == s for _, state in after) for s in ("running", "queued"))
            return lst, (st["queue"]["running"], st["queue"]["queued"]), st["users"]
    return None


# Straight after the submissions, status agrees with list (it used to show
# the device's snapshot of up to a second before).
qc = queue_counts()
vtpy.check(qc is not None and qc[0] == qc[1] and sum(qc[0]) > 0 and
           sum(u["running"] + u["queued"] for u in qc[2]) == sum(qc[0]),
           f"status and list disagree about the queue: {qc}")
for jid in submitted:
    d.wait_state(jid, ["succeeded"], timeout=300)
vtpy.check(len(submitted) == 5, f"{len(submitted)} of 5 concurrent submissions came back")

# ---- the client's own errors ----------------------------------------------------
r = vtpy.run([d.client, "--socket", os.path.join(TMP, "nope.sock"), "list"], check=False)
vtpy.check(r.returncode == 3 and "not running" in r.stderr, f"no daemon: {r.stderr!r}")
r = d.cli("status", "4242", check=False)
vtpy.check(r.returncode == 1 and "no job 4242" in r.stderr, f"missing job: {r.stderr!r}")
r = d.cli("frobnicate", check=False)
vtpy.check(r.returncode == 2, "an unknown command is a usage error")

# With every job ended, status lists no users, at once.
users = d.cli_json("status")["daemon"]["users"]
vtpy.check(users == [], f"status lists users without jobs: {users}")

# SIGHUP (a closed terminal, `systemctl kill -s HUP`) is logged, not a stop.
d.proc.send_signal(signal.SIGHUP)
time.sleep(0.5)
vtpy.check(d.proc.poll() is None and d.cli("status", check=False).returncode == 0 and
           "received SIGHUP" in d.log_text(), "the daemon should survive SIGHUP")

rc, secs = d.stop()
vtpy.check(rc == 0 and secs < 30, f"SIGTERM: exit {rc} after {secs:.1f}s")
vtpy.done()

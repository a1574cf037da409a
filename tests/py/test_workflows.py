#!/usr/bin/env python3
"""The three ways of transfer learning, end to end through the client (CPU).

  bottleneck: features computed once, saved (checked against PyTorch running
    the trained model's trunk), a classifier trained on them
  finetune --init-head JOB: the head starts from the bottleneck job's head
    (layout and values); a conflicting head is refused with a message
  scratch with a validation split
  eval; every output file (metrics.csv, the TensorBoard event file parsed and
  CRC-checked here, classmap.json); keep-best + early stopping; learning-rate
  schedules; augmentation turning the feature cache off; L2 weight decay;
  feature caches shared between jobs; trunks loaded once per weight content,
  shared, and dropped when no job needs them.
"""
import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402
from vtdaemon import Daemon, make_data  # noqa: E402

a = vtpy.args()
np, torch, torchvision = vtpy.need("numpy", "torch", "torchvision")
from safetensors.numpy import load_file as np_load  # noqa: E402
from safetensors import safe_open  # noqa: E402

TMP = vtpy.tmpdir(a.keep)
DATA = make_data(a.build, os.path.join(TMP, "data"), classes=3, per_class=20, val=6)
d = Daemon(a.build, TMP)
COMMON = ["--data", f"{DATA}/train", "--image-size", "32", "--batch-size", "8"]


def submit(*args, ok=True):
    r = d.cli("--json", "submit", *COMMON, *args, check=False)
    if r.returncode != 0:
        vtpy.check(not ok, f"submit {args} failed: {r.stderr}")
        return None
    jid = json.loads(r.stdout)["job"]["id"]
    return d.wait_state(jid, ["succeeded", "failed", "cancelled"], timeout=600)


def out(name):
    return os.path.join(TMP, "out", name)


def meta(path):
    with safe_open(path, "np") as f:
        return f.metadata()


# ---- 1. bottleneck ---------------------------------------------------------------
bn = submit("--mode", "bottleneck", "--val", f"{DATA}/val", "--epochs", "4", "--name", "bn",
            "--out", out("bn"))
vtpy.check(bn["state"] == "succeeded", f"bottleneck: {bn}")
feats = np_load(os.path.join(out("bn"), "bottleneck_features.safetensors"))
fm = meta(os.path.join(out("bn"), "bottleneck_features.safetensors"))
vtpy.check(feats["train"].shape == (60, 512, 1, 1) and feats["val"].shape == (18, 512, 1, 1),
           f"feature shapes {feats['train'].shape} {feats['val'].shape}")
files = json.loads(fm["train_files"])
classes = json.loads(fm["classes"])
vtpy.check(len(files) == 60 and classes == sorted(os.listdir(f"{DATA}/train")),
           f"feature metadata: {len(files)} files, classes {classes}")
vtpy.check([classes[int(x)] for x in feats["train_labels"]] == [f.split("/")[0] for f in files],
           "feature labels do not match their files")
# Independent check: torchvision's VGG16 features with the model's trunk.
sd = np_load(os.path.join(out("bn"), "model.safetensors"))
net = torchvision.models.vgg16().features.eval()
net.load_state_dict({k[9:]: torch.from_numpy(v) for k, v in sd.items() if k.startswith("features.")})
# Feed our own decoded pixels (tests/imgdump) so the network is compared,
# not two resizers (the images are 40x40, the input 32x32).
raw = []
for f in files[:8]:
    p = subprocess.run([os.path.join(a.build, "tests", "imgdump"),
                        os.path.join(f"{DATA}/train", f), "32", "32"],
                       capture_output=True, check=True)
    raw.append(np.frombuffer(p.stdout, dtype=np.uint8).reshape(32, 32, 3))
x = torch.from_numpy(np.stack(raw)).permute(0, 3, 1, 2).float() / 255.0
x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
    [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
with torch.no_grad():
    ref = net(x).numpy()
err = vtpy.rel_err(feats["train"][:8], ref)
vtpy.check(err < 1e-4, f"bottleneck features differ from PyTorch by {err:.3g}")
print(f"bottleneck features vs PyTorch: {err:.3g}")
m = [json.loads(l) for l in open(os.path.join(out("bn"), "metrics.jsonl"))]
vtpy.check(not m[0]["cached"] and all(x["cached"] and x["cache"] == "features" for x in m[1:]),
           "bottleneck cache flags")
print(f"bottleneck CPU epoch cost: first {m[0]['seconds']:.2f}s, later "
      f"{np.mean([x['seconds'] for x in m[1:]]):.3f}s "
      f"({m[0]['seconds'] / max(np.mean([x['seconds'] for x in m[1:]]), 1e-9):.0f}x cheaper)")

# A folder an unfinished bottleneck job left (its features file, no model)
# is taken over without --overwrite: the file is recognised as vggtune's,
# as one written with its format after the file lists (before 2026-12-05).
first = open(os.path.join(out("bn"), "bottleneck_features.safetensors"), "rb").read(8 + 40)[8:]
vtpy.check(first.startswith(b'{"__metadata__":{"format":"vggtune-'), f"features header: {first}")
for name, body in (("left", None), ("old", {"train_files": "[]", "val_files": "[]",
                                            "format": "vggtune-bottleneck-features-1"})):
    os.makedirs(out(name))
    dst = os.path.join(out(name), "bottleneck_features.safetensors")
    if body is None:
        shutil.copy(os.path.join(out("bn"), "bottleneck_features.safetensors"), dst)
    else:
        h = json.dumps({"__metadata__": body}, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        open(dst, "wb").write(len(h).to_bytes(8, "little") + h)
    again = submit("--mode", "bottleneck", "--epochs", "1", "--name", name, "--out", out(name))
    vtpy.check(again["state"] == "succeeded", f"taking over a bottleneck job's folder ({name}): {again}")

# An image whose file name is not UTF-8 trains like any other; the features
# file lists it with '?' for that byte (its metadata takes only UTF-8).
odd = os.path.join(TMP, "odd")
shutil.copytree(f"{DATA}/train", odd)
cls0 = sorted(os.listdir(odd))[0]
first_img = sorted(os.listdir(os.path.join(odd, cls0)))[0]
ext = os.path.splitext(first_img)[1]
os.rename(os.path.join(odd, cls0, first_img).encode(),
          os.path.join(odd, cls0).encode() + b"/img\xe9" + ext.encode())
r = d.cli("--json", "submit", "--data", odd, "--image-size", "32", "--batch-size", "8",
          "--mode", "bottleneck", "--val-split", "0.25", "--epochs", "1", "--name", "odd",
          "--out", out("odd"), check=False)
vtpy.check(r.returncode == 0, f"submit with a non-UTF-8 image name: {r.stderr}")
oddj = d.wait_state(json.loads(r.stdout)["job"]["id"], ["succeeded", "failed", "cancelled"],
                    timeout=600)
vtpy.check(oddj["state"] == "succeeded", f"a non-UTF-8 image name failed the job: {oddj}")
om = meta(os.path.join(out("odd"), "bottleneck_features.safetensors"))
listed = json.loads(om["train_files"]) + json.loads(om["val_files"])
vtpy.check(f"{cls0}/img?{ext}" in listed and len(listed) == 60,
           f"the non-UTF-8 name in the features file: {[f for f in listed if 'img' in f]}")

# ---- 2. finetune from the bottleneck head -----------------------------------------
ft = submit("--mode", "finetune", "--init-head", str(bn["id"]), "--val", f"{DATA}/val",
            "--epochs", "1", "--lr", "1e-12", "--name", "ft", "--out", out("ft"))
vtpy.check(ft["state"] == "succeeded", f"finetune --init-head: {ft}")
fsd = np_load(os.path.join(out("ft"), "model.safetensors"))
for k in ("head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias"):
    vtpy.check(k in fsd and fsd[k].shape == sd[k].shape and vtpy.rel_err(fsd[k], sd[k]) < 1e-6,
               f"finetune head {k} should start from the bottleneck head")
vtpy.check("head.2.weight" not in fsd, "the head layout should come from the bottleneck job")
# Only what the bottleneck job trained, its head (2 dense layers = 4 tensors),
# comes from it; block 5 starts from this job's own weights.
vtpy.check(f"job {ft['id']}: initialised 4 tensors from" in d.log_text(),
           "finetune --init-head from a bottleneck job should take the head alone")
vtpy.check(not re.search(f"job {ft['id']}: the init model .* (was trained on images|learned on)",
                         d.log_text()),
           "a head from a job of the same trunk and preprocessing: no warning")
r = d.cli("submit", *COMMON, "--mode", "finetune", "--init-head", str(bn["id"]), "--dense",
          "64,32", "--epochs", "1", "--name", "ftbad", "--out", out("ftbad"), check=False)
vtpy.check(r.returncode == 2 and "conflicts with the head of job" in r.stderr and
           "[256]" in r.stderr, f"a conflicting head is refused at submit: {r.returncode} "
           f"{r.stderr!r}")
# A job that took its head from another job reports the layout it has
# ([256], not the finetune default its document left out), and a job
# starting from it is checked against that at submit.
spec_ft = d.cli_json("status", str(ft["id"]))["job"]["spec"]
vtpy.check(spec_ft["head"]["dense"] == [256], f"the head of an --init-head job: {spec_ft['head']}")
ok2 = submit("--mode", "finetune", "--init-head", str(ft["id"]), "--dense", "256",
             "--epochs", "1", "--name", "ft2", "--out", out("ft2"))
vtpy.check(ok2["state"] == "succeeded", f"--init-head of an --init-head job, same layout: {ok2}")
r = d.cli("submit", *COMMON, "--mode", "finetune", "--init-head", str(ft["id"]), "--dense",
          "1024,128", "--epochs", "1", "--name", "ft3", "--out", out("ft3"), check=False)
vtpy.check(r.returncode == 2 and "conflicts with the head of job" in r.stderr and
           "[256]" in r.stderr, f"--init-head of an --init-head job, other layout: {r.stderr!r}")
# Another number of classes is refused at submission too, from the model's
# metadata (read as the user), as with --init: it failed once started.
two = make_data(a.build, os.path.join(TMP, "two-classes"), classes=2, per_class=4)
r = d.cli("submit", "--data", f"{two}/train", "--image-size", "32", "--mode", "finetune",
          "--init-head", str(bn["id"]), "--epochs", "1", "--out", out("two"), check=False)
vtpy.check(r.returncode == 2 and f"--init-head {bn['id']}'s model " in r.stderr and
           f"has 3 classes, but --data {two}/train has 2 class folders" in r.stderr and
           not os.path.exists(out("two")), f"--init-head with other classes: {r.stderr!r}")
# A bottleneck job from the finetune job's model takes its head alone, and
# says that head learned from features this job's frozen block 5 does not give.
bn2 = submit("--mode", "bottleneck", "--init-head", str(ft["id"]), "--epochs", "1",
             "--name", "bn2", "--out", out("bn2"))
w = d.cli("watch", str(bn2["id"])).stdout
vtpy.check(bn2["state"] == "succeeded" and "trained 1 convolution block with its head; this "
           "job trains 0" in w, f"bottleneck from a finetune model: {bn2} {w!r}")
r = d.cli("submit", *COMMON, "--init-head", "999", "--out", out("x"), check=False)
vtpy.check(r.returncode == 1 and "no job 999" in r.stderr, f"init-head of no job: {r.stderr!r}")

# A head trained on other class names (the same count) is taken, with a
# warning in the job's log naming what each unit now means; a head from the
# same classes, as above, gives none.  Both ways: --init-head and --init.
vtpy.check("output units were trained for" not in d.log_text(),
           "a head from the same classes should not warn")
other = os.path.join(TMP, "other-classes")
for c in classes:
    dst = os.path.join(other, "zebra" if c == classes[0] else c)
    os.makedirs(dst)
    for f in sorted(os.listdir(os.path.join(DATA, "train", c)))[:2]:
        shutil.copy(os.path.join(DATA, "train", c, f), dst)
want = (f"the init model's output units were trained for {', '.join(classes)}; this data's "
        f"classes are {', '.join(classes[1:] + ['zebra'])}: unit 0 '{classes[0]}' now means "
        f"'{classes[1]}', unit 1 '{classes[1]}' now means '{classes[2]}', unit 2 '{classes[2]}' "
        f"now means 'zebra'")
for how, src in (("--init-head", str(bn["id"])),
                 ("--init", os.path.join(out("bn"), "model.safetensors"))):
    r = d.cli("--json", "submit", "--data", other, "--image-size", "32", "--mode", "bottleneck",
              how, src, "--epochs", "1", "--name", "renamed", "--out", out("renamed" + how))
    j = d.wait_state(json.loads(r.stdout)["job"]["id"], ["succeeded", "failed"])
    vtpy.check(j["state"] == "succeeded", f"{how} on renamed classes: {j}")
    vtpy.check(f"job {j['id']}: {want}" in d.log_text(),
               f"{how} on renamed classes should warn: {want!r} not in the log")

# ---- 3. scratch with a validation split --------------------------------------------
sc = submit("--mode", "scratch", "--val-split", "0.25", "--epochs", "2", "--name", "sc",
            "--out", out("sc"))
vtpy.check(sc["state"] == "succeeded", f"scratch: {sc}")
m = [json.loads(l) for l in open(os.path.join(out("sc"), "metrics.jsonl"))]
vtpy.check(len(m) == 2 and m[0]["val_accuracy"] is not None, f"scratch metrics: {m}")
# Nothing is frozen in scratch: the cache holds decoded images, and says so.
vtpy.check(m[1]["cached"] and m[1]["cache"] == "images" and "cache" not in m[0],
           f"scratch cache flags: {m}")
vtpy.check(f"job {sc['id']}: sc:" in d.log_text() and
           "feature cache" not in d.log_text().split(f"job {sc['id']}: sc:")[1].split("\n")[0]
           and "image cache on" in d.log_text().split(f"job {sc['id']}: sc:")[1].split("\n")[0],
           "a scratch job's log should speak of its image cache")
sc_meta = meta(os.path.join(out("sc"), "model.safetensors"))
vtpy.check(sc_meta["trainable_blocks"] == "5", "scratch trains every block")
sc_seed = json.loads(sc_meta["job"])["seed"]
vtpy.check(sc_meta["weights"] == f"random (He, seed {sc_seed})",
           f"scratch draws every layer from the job's seed: {sc_meta['weights']!r}")

# ---- bottleneck with random crops: no cache, so no features file, and it says so ----
# (on data with a damaged image, which the summary counts apart)
crop_data = os.path.join(TMP, "crop-data")
subprocess.run(["cp", "-r", f"{DATA}/train", crop_data], check=True)
with open(os.path.join(crop_data, classes[0], "broken.jpg"), "wb") as f:
    f.write(b"\xff\xd8\xff\xe0 not really a JPEG")
# a JPEG cut short: its header reads, its pixels do not (found while decoding)
first_jpg = sorted(n for n in os.listdir(os.path.join(crop_data, classes[1])) if n.endswith(".jpg"))[0]
whole = open(os.path.join(crop_data, classes[1], first_jpg), "rb").read()
with open(os.path.join(crop_data, classes[1], "zz-cut.jpg"), "wb") as f:
    f.write(whole[:len(whole) * 2 // 3])
bc = submit("--mode", "bottleneck", "--data", crop_data, "--crop", "0.2", "--epochs", "1",
            "--name", "bncrop", "--out", out("bncrop"))
log = d.log_text()
vtpy.check(bc["state"] == "succeeded" and
           not os.path.exists(os.path.join(out("bncrop"), "bottleneck_features.safetensors")) and
           f"job {bc['id']}: bottleneck_features.safetensors not written: the feature cache is "
           "off (random crops" in log, f"bottleneck with crops: {bc}")
vtpy.check(f"job {bc['id']}: bncrop: 61 training images (1 unreadable left out), 0 validation "
           "images" in log, "the summary should count the readable images")
vtpy.check(f"skipping unreadable training image {crop_data}/{classes[0]}/broken.jpg: " in log,
           "an unreadable image is named, with the reason")
vtpy.check("skipping unreadable training image (found decoding it): " in log and
           "zz-cut.jpg" in log and "60 training images left" in log,
           "an image found unreadable while decoding is named, and the images left counted")

# ---- more validation images than training images (once overflowed the heap) -------
small = os.path.join(TMP, "small-train")
for c in classes:
    os.makedirs(os.path.join(small, c))
    for name in sorted(os.listdir(os.path.join(DATA, "train", c)))[:2]:
        subprocess.run(["cp", os.path.join(DATA, "train", c, name), os.path.join(small, c)],
                       check=True)
sv = submit("--data", small, "--val", f"{DATA}/val", "--epochs", "2", "--batch-size", "4",
            "--name", "smallval", "--out", out("smallval"))
vtpy.check(sv["state"] == "succeeded", f"6 training and 18 validation images: {sv}")

# ---- eval ---------------------------------------------------------------------------
r = d.cli("eval", str(bn["id"]), f"{DATA}/val")
vtpy.check("accuracy" in r.stdout and all(c in r.stdout for c in classes), f"eval: {r.stdout!r}")
ev = d.cli_json("eval", str(bn["id"]), f"{DATA}/val")["eval"]
vtpy.check(sum(map(sum, ev["confusion"])) == 18, f"eval confusion: {ev}")
# One class is enough to evaluate on, not to train on.
one = os.path.join(TMP, "one-class")
os.makedirs(one)
subprocess.run(["cp", "-r", os.path.join(DATA, "val", classes[1]), one], check=True)
ev = d.cli_json("eval", str(bn["id"]), one)["eval"]
vtpy.check(sum(map(sum, ev["confusion"])) == 6, f"eval on one class: {ev}")
r = d.cli("eval", str(bn["id"]), os.path.join(TMP, "nonexistent"), check=False)
vtpy.check(r.returncode != 0 and "training" not in r.stderr and "does not exist" in r.stderr,
           f"eval of a missing folder: {r.stderr!r}")
# The client sees that much at once (its top level only) and refuses ...
r = d.cli("submit", "--data", one, "--image-size", "32", "--epochs", "1", "--name", "one",
          "--out", out("one"), check=False)
vtpy.check(r.returncode == 2 and f"--data {one} has one class folder ({classes[1]})" in r.stderr,
           f"submitting one class: {r.returncode} {r.stderr!r}")
# ... and the daemon, given the document directly, fails the job, taking
# back the output directory it made for it (empty: the next default name
# must not skip to -2).
raw = d.raw()
rep = raw.request({"op": "submit", "job": {"name": "one", "data": {"train": one,
                                                                   "image_size": 32},
                                           "epochs": 1, "output": out("one")}})
raw.close()
vtpy.check(rep.get("ok"), f"raw submit of one class: {rep}")
bad = d.wait_state(rep["job"]["id"], ["succeeded", "failed", "cancelled"], timeout=600)
vtpy.check(bad["state"] == "failed" and "training needs at least 2" in bad.get("error", ""),
           f"training on one class: {bad}")
vtpy.check(not os.path.exists(out("one")),
           f"a job that failed before writing anything left {out('one')} behind")
# A learning rate that blows the loss up fails the job, rather than keeping a
# model of NaNs.
bad = submit("--lr", "1", "--epochs", "2", "--name", "diverge", "--out", out("diverge"))
vtpy.check(bad["state"] == "failed" and "training diverged" in bad.get("error", ""),
           f"a diverging job: {bad}")
# One image per class: a val_split cannot give validation any, and says so.
tiny = os.path.join(TMP, "one-each")
for c in classes[:2]:
    os.makedirs(os.path.join(tiny, c))
    subprocess.run(["cp", os.path.join(DATA, "val", c, "img00000.jpg"), os.path.join(tiny, c)],
                   check=True)
bad = submit("--data", tiny, "--val-split", "0.2", "--image-size", "32", "--epochs", "1",
             "--name", "tiny", "--out", out("tiny"))
vtpy.check(bad["state"] == "failed" and "leaves no validation images" in bad.get("error", ""),
           f"val_split on one image per class: {bad}")
# Two per class: half goes to validation whatever val_split asks, and the
# log says so.
for c in classes[:2]:
    subprocess.run(["cp", os.path.join(DATA, "val", c, "img00001.jpg"), os.path.join(tiny, c)],
                   check=True)
two = submit("--data", tiny, "--val-split", "0.9", "--image-size", "32", "--epochs", "1",
             "--name", "two", "--out", out("two"))
vtpy.check(two["state"] == "succeeded" and "val_split 0.9: 2 of 4 images go to validation "
           "(50%)" in d.cli("watch", str(two["id"])).stdout,
           f"val_split that tiny classes cannot follow: {two}")

# ---- outputs ------------------------------------------------------------------------
m_bn = [json.loads(l) for l in open(os.path.join(out("bn"), "metrics.jsonl"))]
rows = list(csv.DictReader(open(os.path.join(out("bn"), "metrics.csv"))))
vtpy.check(len(rows) == 4 and abs(float(rows[-1]["val_accuracy"]) -
                                  m_bn[-1]["val_accuracy"]) < 1e-8, "metrics.csv rows")


def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82f63b78 if crc & 1 else crc >> 1
    return crc ^ 0xffffffff


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xa282ead8) & 0xffffffff


def varint(b, i):
    v = s = 0
    while True:
        v |= (b[i] & 0x7f) << s
        s += 7
        i += 1
        if not b[i - 1] & 0x80:
            return v, i


def fields(b):
    i, out_ = 0, []
    while i < len(b):
        key, i = varint(b, i)
        f, t = key >> 3, key & 7
        if t == 0:
            v, i = varint(b, i)
        elif t == 1:
            v, i = b[i:i + 8], i + 8
        elif t == 5:
            v, i = b[i:i + 4], i + 4
        else:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        out_.append((f, v))
    return out_


tb = open(os.path.join(out("bn"), "events.out.tfevents.vggtune"), "rb").read()
i, events = 0, []
while i < len(tb):
    n = struct.unpack("<Q", tb[i:i + 8])[0]
    vtpy.check(struct.unpack("<I", tb[i + 8:i + 12])[0] == masked(tb[i:i + 8]), "TB length CRC")
    data = tb[i + 12:i + 12 + n]
    vtpy.check(struct.unpack("<I", tb[i + 12 + n:i + 16 + n])[0] == masked(data), "TB data CRC")
    events.append(dict(fields(data)))
    i += 16 + n
vtpy.check(events[0].get(3) == b"brain.Event:2", "first event: file_version")
scalars = {}
for e in events[1:]:
    val = dict(fields(dict(fields(e[5]))[1]))
    scalars.setdefault(val[1].decode(), []).append((e[2], struct.unpack("<f", val[2])[0]))
vtpy.check(len(scalars.get("epoch/val_accuracy", [])) == 4 and "step/loss" in scalars,
           f"TB scalars: { {k: len(v) for k, v in scalars.items()} }")
vtpy.check(abs(scalars["epoch/loss"][-1][1] - m_bn[-1]["loss"]) < 1e-5, "TB loss value")
cm = json.load(open(os.path.join(out("bn"), "classmap.json")))
vtpy.check(cm["classes"] == classes and cm["class_indices"][classes[1]] == 1, f"classmap {cm}")
for name in ("classmap.json", "metrics.csv", "metrics.jsonl"):
    tail = open(os.path.join(out("bn"), name), "rb").read()[-2:]
    vtpy.check(tail.endswith(b"\n") and tail != b"\n\n", f"{name} ends with one newline: {tail!r}")

# ---- keep-best, early stopping, schedules, augmentation, weight decay --------------
spec = {"name": "es", "mode": "finetune",
        "data": {"train": f"{DATA}/train", "val": f"{DATA}/val", "image_size": 32},
        "epochs": 20, "batch_size": 8, "keep_best": True,
        "early_stopping": {"patience": 2, "min_delta": 100.0}, "output": out("es")}
with open(os.path.join(TMP, "es.json"), "w") as f:
    json.dump(spec, f)
w = d.cli("submit", "--spec", os.path.join(TMP, "es.json"), "--watch").stdout
es = d.wait_state(int(w.split()[2]), ["succeeded", "failed"])  # "submitted job N (es)"
# The early stop is told after the line of the epoch it names.
vtpy.check("epoch 3/20 " in w and "early stopping after epoch 3" in w and
           w.index("epoch 3/20 ") < w.index("early stopping after epoch 3"),
           f"early stopping is told before its epoch's line: {w!r}")
vtpy.check(es["state"] == "succeeded" and es["epochs_done"] == 3,
           f"early stopping after 1 + patience epochs: {es}")
vtpy.check(meta(os.path.join(out("es"), "model.safetensors"))["epochs"] == "1",
           "keep-best should keep epoch 1 (the only improvement)")
es = d.cli_json("status", str(es["id"]))["job"]
vtpy.check(es["kept_epoch"]["epoch"] == 1 and es["metrics"][-1]["kept_epoch"] == 1,
           f"the job reports the kept epoch: {es.get('kept_epoch')}")
# With the patience running out on the last epoch, nothing stops early.
spec.update(name="es3", epochs=3, output=out("es3"))
with open(os.path.join(TMP, "es3.json"), "w") as f:
    json.dump(spec, f)
w = d.cli("submit", "--spec", os.path.join(TMP, "es3.json"), "--watch").stdout
vtpy.check("epoch 3/3 " in w and "early stopping" not in w,
           f"patience running out on the last epoch is no early stop: {w!r}")
line = [x for x in d.cli("list").stdout.splitlines() if x.split()[:1] == [str(es["id"])]]
want = f"val_acc {es['kept_epoch']['val_accuracy']:.4f} (kept epoch 1)"
vtpy.check(line and want in line[0], f"list shows the kept model's figures ({want}): {line}")
text = d.cli("status", str(es["id"])).stdout
vtpy.check("model      epoch 1's (keep_best" in text, f"status names the kept epoch: {text!r}")

st = submit("--schedule", "step", "--epochs", "4", "--lr", "0.01", "--name", "st",
            "--out", out("st"))
spec_st = json.loads(meta(os.path.join(out("st"), "model.safetensors"))["job"])
vtpy.check(spec_st["optimizer"]["schedule"]["type"] == "step", "schedule recorded")
aug = submit("--flip", "--crop", "0.125", "--epochs", "2", "--name", "aug", "--out", out("aug"))
m = [json.loads(l) for l in open(os.path.join(out("aug"), "metrics.jsonl"))]
vtpy.check(aug["state"] == "succeeded" and not any(x["cached"] for x in m),
           "augmentation must turn the training cache off")
norms = {}
for wd in ("0", "0.5"):
    path = os.path.join(TMP, f"wd{wd}.json")
    with open(path, "w") as f:
        json.dump({"name": "wd", "data": {"train": f"{DATA}/train", "image_size": 32},
                   "optimizer": {"lr": 0.01, "weight_decay": float(wd)}, "epochs": 2,
                   "batch_size": 8, "output": out("wd" + wd)}, f)
    j = d.cli_json("submit", "--spec", path)["job"]
    d.wait_state(j["id"], ["succeeded"])
    w = np_load(os.path.join(out("wd" + wd), "model.safetensors"))["head.0.weight"]
    norms[wd] = float(np.linalg.norm(w))
vtpy.check(norms["0.5"] < norms["0"], f"weight decay should shrink weights: {norms}")
# ---- a second job on the same data starts from the first one's features ------
def spec_file(name, **extra):
    spec = {"name": name, "mode": "finetune",
            "data": {"train": f"{DATA}/train", "val": f"{DATA}/val", "image_size": 32},
            "batch_size": 8, "seed": 4, "output": out(name)}
    spec.update(extra)
    path = os.path.join(TMP, name + ".json")
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


first = d.cli_json("submit", "--spec", spec_file("holder", epochs=500))["job"]["id"]
while d.cli_json("status", str(first))["job"]["epochs_done"] < 1:
    pass
fc = d.cli_json("status")["daemon"]["feature_caches"]
vtpy.check(fc["count"] >= 1 and fc["device_bytes"] > 0 and fc["host_bytes"] == 0,
           f"status should show the running job's feature caches: {fc}")
second = d.cli_json("submit", "--spec", spec_file("sharer", epochs=2))["job"]["id"]
d.wait_state(second, ["succeeded"])
d.cli("cancel", str(first))
m = [json.loads(l) for l in open(os.path.join(out("sharer"), "metrics.jsonl"))]
vtpy.check(m[0]["cached"], "the second job's first epoch should use the first job's features")
vtpy.run([os.path.join(a.build, "daemon", "vggtuned"), "run", "--backend", "cpu", "--quiet",
          spec_file("alone", epochs=2)])
x = np_load(os.path.join(out("sharer"), "model.safetensors"))
y = np_load(os.path.join(out("alone"), "model.safetensors"))
vtpy.check(all(np.array_equal(x[k], y[k]) for k in y),
           "training from shared features must give the same weights as alone")

# ---- trunks: loaded once per weight content, shared, dropped when unused -------
from safetensors.torch import save_file  # noqa: E402
torch.manual_seed(3)
wfile = os.path.join(TMP, "w1.safetensors")
save_file({f"features.{k}": v.contiguous()
           for k, v in torchvision.models.vgg16().features.state_dict().items()}, wfile)
wcopy = os.path.join(TMP, "w1-copy.safetensors")
shutil.copy(wfile, wcopy)


def trunks():
    return d.cli_json("status")["daemon"]["trunks"]


held = [d.cli_json("submit", "--spec", spec_file(f"t{i}", epochs=500, weights=w))["job"]["id"]
        for i, w in enumerate((wfile, wcopy))]
deadline = time.time() + 120
while time.time() < deadline:
    ts = [t for t in trunks() if not t["resident"]]
    if ts and ts[0]["jobs"] == 2:
        break
    time.sleep(0.2)
vtpy.check(len(ts) == 1 and ts[0]["jobs"] == 2,
           f"two jobs on one weight content should share one trunk: {trunks()}")
# The same convolutions as a Keras file: it shares that trunk, yet a job
# naming it keeps its own file's preprocessing (caffe; the safetensors
# jobs torch) and records its own file, not the one the trunk came from.
import h5py  # noqa: E402
kfile = os.path.join(TMP, "w1-keras.h5")
torch.manual_seed(3)  # as w1 was made
sd = {k: v for k, v in torchvision.models.vgg16().features.state_dict().items()}
convs = sorted({int(k.split(".")[0]) for k in sd}, key=int)
names = []
with h5py.File(kfile, "w") as f:
    i = 0
    for b, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for c in range(1, n + 1):
            lname = f"block{b}_conv{c}"
            names.append(lname)
            g = f.create_group(lname)
            g.attrs["weight_names"] = [f"{lname}_W_1:0".encode(), f"{lname}_b_1:0".encode()]
            g[f"{lname}_W_1:0"] = sd[f"{convs[i]}.weight"].numpy().transpose(2, 3, 1, 0)
            g[f"{lname}_b_1:0"] = sd[f"{convs[i]}.bias"].numpy()
            i += 1
    f.attrs["layer_names"] = [n.encode() for n in names]
kjob = d.cli_json("submit", "--spec", spec_file("tk", epochs=1, weights=kfile))["job"]["id"]
d.wait_state(kjob, ["succeeded"])
vtpy.check(len([t for t in trunks() if not t["resident"]]) == 1,
           f"a Keras file with the same convolutions should share the trunk: {trunks()}")
km = meta(os.path.join(out("tk"), "model.safetensors"))
vtpy.check(km["preprocess"] == "caffe" and km["weights"] == f"keras:{kfile}",
           f"a job on a shared trunk keeps its own file's preprocessing and name: {km}")
# A head started from that job on the daemon's own trunk: trained on other
# input (caffe preprocessing, the Keras file's features), which the job's
# log says.
fk = d.cli_json("submit", "--spec", spec_file("from-tk", epochs=1, init_job=kjob))["job"]["id"]
d.wait_state(fk, ["succeeded"])
w = d.cli("watch", str(fk)).stdout
vtpy.check("was trained on images with caffe preprocessing; this job gives its images torch "
           "preprocessing" in w and
           f"learned on the features of the trunk keras:{kfile}; this job's frozen trunk is "
           "random" in w, f"a head from another trunk and preprocessing: {w[-800:]!r}")
for jid in held:
    d.cli("cancel", str(jid))
deadline = time.time() + 60
while time.time() < deadline and any(not t["resident"] for t in trunks()):
    time.sleep(0.2)
vtpy.check(all(t["resident"] for t in trunks()), f"unused trunk not dropped: {trunks()}")

# ---- a class whose images all fail to decode --------------------------------------
# Headers whole, the image data cut short: the scan takes them, the first
# epoch's decoding finds them out.  Of two classes, one then has none: the
# job fails, as one with a single readable class is refused at its start
# (it succeeded, a classifier of one class); of three, two are left: it
# trains on, naming the class it lost.
for ncls, want in ((2, "failed"), (3, "succeeded")):
    root = make_data(a.build, os.path.join(TMP, f"cut{ncls}"), classes=ncls, per_class=6, val=2)
    lost = sorted(os.listdir(os.path.join(root, "train")))[-1]
    for name in os.listdir(os.path.join(root, "train", lost)):
        path = os.path.join(root, "train", lost, name)
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[:data.find(b"\xff\xda") + 100])  # (start of scan, and a little)
    j = d.cli_json("submit", "--spec", spec_file(f"cut{ncls}", epochs=2, data={
        "train": f"{root}/train", "val": f"{root}/val", "image_size": 32}))["job"]["id"]
    st = d.wait_state(j, ["succeeded", "failed", "cancelled"], timeout=300)
    w = d.cli("watch", str(j), check=False).stdout
    vtpy.check(st["state"] == want and f"training class '{lost}' has no image left that "
               "decodes (6 failed in epoch 1)" in w and
               (want == "succeeded" or "readable images in only 1 class once those that "
                "failed to decode in epoch 1 are left out" in st.get("error", "")),
               f"{ncls} classes, one of them undecodable: {st['state']} {st.get('error')} "
               f"{w[-500:]!r}")

rc, _ = d.stop()
vtpy.check(rc == 0, "stop")
vtpy.done()

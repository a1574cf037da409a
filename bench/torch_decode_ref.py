#!/usr/bin/env python3
"""torch_decode_ref.py - the PyTorch reference of vt-decodebench.

What a PyTorch user's input pipeline costs on the CPU: torchvision
ImageFolder + DataLoader, PIL decode, then exactly the transforms of
shared/anchors/torch_e2e_jpeg.py's `loader` (T.Resize((S, S)), T.ToTensor(),
T.Normalize(ImageNet mean, std)), batch 64, for each --workers count.
Nothing touches a GPU, so it runs anywhere torch and torchvision do.

Method, the same as vt-decodebench's so the two compare: every file is read
once before anything is timed (warm page cache), the files are walked in
the same order (class, then file name; shuffle=False), and the figure is
the median of --reps timed passes.  The workers are persistent
(persistent_workers=True): the first pass also starts them and the median
leaves that out, the best a PyTorch user can do across epochs.  Output: one
JSON line per worker count with vt-decodebench's fields and
"mode":"decode_torch", then a table.

  torch_decode_ref.py --data DIR [--size S] [--workers N,N,...] [--reps R]
                      [--batch B] [--json FILE]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torchvision
from torchvision import transforms as T


def counts(text):
    """Parses "1,4" into [1, 4] (argparse type)."""
    try:
        vals = [int(x) for x in text.split(",") if x]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"want comma-separated counts >= 1: {text!r}")
    return vals


def warm(files):
    """Reads every file once (page cache); returns their total size in bytes."""
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += len(fh.read())
    return total


def measure(ds, workers, batch, reps):
    """Times reps passes of a DataLoader over ds; returns the pass seconds."""
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=False, num_workers=workers,
                                     persistent_workers=True, drop_last=False)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        n = 0
        for x, _y in dl:
            n += x.shape[0]
        times.append(time.perf_counter() - t)
        if n != len(ds):
            sys.exit(f"torch_decode_ref: a pass gave {n} images of {len(ds)}")
    del dl
    return times


def main():
    p = argparse.ArgumentParser(description="PyTorch DataLoader decode reference (CPU only).")
    p.add_argument("--data", required=True, help="dataset root, one sub-folder per class")
    p.add_argument("--size", type=int, default=224, help="resize to S x S (default 224)")
    p.add_argument("--workers", type=counts, default=None,
                   help="comma-separated DataLoader worker counts (default 1,NPROC)")
    p.add_argument("--reps", type=int, default=3, help="timed passes per count (default 3)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--json", help="also append the JSON lines to this file")
    a = p.parse_args()
    cpus = os.cpu_count() or 1
    workers = a.workers or sorted({1, cpus})
    if a.reps < 1 or a.size < 1 or a.batch < 1:
        p.error("--reps, --size and --batch must be >= 1")
    if not os.path.isdir(a.data):
        p.error(f"--data {a.data}: not a directory")

    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    ds = torchvision.datasets.ImageFolder(a.data, T.Compose([T.Resize((a.size, a.size)),
                                                             T.ToTensor(), norm]))
    nbytes = warm(s[0] for s in ds.samples)
    print(f"torch_decode_ref: {len(ds)} images in {len(ds.classes)} classes, "
          f"{nbytes / 1024 / len(ds):.1f} KiB mean, page cache warmed; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}", file=sys.stderr)
    rows = []
    for w in workers:
        t = sorted(measure(ds, w, a.batch, a.reps))
        med = statistics.median(t)
        ips = len(ds) / med
        r = dict(impl="torch", mode="decode_torch", threads=w, size=a.size, batch=a.batch,
                 images=len(ds), bytes=nbytes, reps=a.reps, images_per_s=round(ips, 1),
                 per_core=round(ips / w, 1), median_s=round(med, 4), min_s=round(t[0], 4),
                 max_s=round(t[-1], 4), cpus=cpus)
        rows.append(r)
        line = json.dumps(r)
        print(line, flush=True)
        if a.json:
            with open(a.json, "a") as f:
                f.write(line + "\n")
    print(f"\ntorch DataLoader decode  {len(ds)} images -> {a.size}x{a.size}, {cpus} cpus, "
          f"median of {a.reps} passes")
    print(f"{'workers':>7} {'img/s':>10} {'img/s/core':>12} {'median s':>9} {'min s':>9}")
    for r in rows:
        print(f"{r['threads']:>7} {r['images_per_s']:>10.1f} {r['per_core']:>12.1f} "
              f"{r['median_s']:>9.3f} {r['min_s']:>9.3f}")


if __name__ == "__main__":
    main()

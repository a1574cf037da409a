#!/usr/bin/env python3
"""Rehearsal stand-in for bench/torch_decode_ref.py (no torch).

Same arguments; reads the files as the real one does (ImageFolder's
order, every file once, so its byte count matches vt-decodebench's) and
prints and appends the same JSON lines, with the per-worker rate PyTorch's
DataLoader reached on 2026-12-04 (bench/runs/2026-12-04-h200/run1-decode.log).
"""
import argparse, json, os, sys

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--size", type=int, default=224)
p.add_argument("--workers", default=None)
p.add_argument("--reps", type=int, default=3)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--json")
a = p.parse_args()
cpus = os.cpu_count() or 1
workers = [int(x) for x in a.workers.split(",")] if a.workers else sorted({1, cpus})
EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
files = [os.path.join(a.data, c, f) for c in sorted(d.name for d in os.scandir(a.data) if d.is_dir())
         for f in sorted(os.listdir(os.path.join(a.data, c))) if f.lower().endswith(EXT)]
nbytes = sum(os.path.getsize(f) for f in files)
print(f"torch_decode_ref (rehearsal stub): {len(files)} images", file=sys.stderr)
for w in workers:
    ips = 200.1 * w * (0.75 if w > 1 else 1)
    med = len(files) / ips
    r = dict(impl="torch", mode="decode_torch", threads=w, size=a.size, batch=a.batch,
             images=len(files), bytes=nbytes, reps=a.reps, images_per_s=round(ips, 1),
             per_core=round(ips / w, 1), median_s=round(med, 4), min_s=round(med * 0.95, 4),
             max_s=round(med * 1.05, 4), cpus=cpus)
    line = json.dumps(r)
    print(line, flush=True)
    if a.json:
        with open(a.json, "a") as f:
            f.write(line + "\n")

#!/usr/bin/env python3
"""Rehearsal stand-in for shared/anchors/torch_e2e_jpeg.py (no torch).

Same arguments; counts the images under --data as ImageFolder would and
prints the same lines in the same format (loader, gpu_decode, job_naive,
then the table), with the rates the real anchor measured on an H200 on
2026-12-04 (bench/runs/2026-12-04-h200/run1-e2e.log).
"""
import argparse, json, os

p = argparse.ArgumentParser()
p.add_argument("--data", default="/tmp/vggdata")
p.add_argument("--make", type=int, default=0)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--workers", type=int, default=os.cpu_count())
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--classes", type=int, default=5)
a = p.parse_args()
if a.make:
    raise SystemExit("torch_e2e_jpeg (stub): --make is not rehearsed")
EXT = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
classes = sorted(d.name for d in os.scandir(a.data) if d.is_dir())
N = sum(1 for c in classes for f in os.listdir(os.path.join(a.data, c)) if f.lower().endswith(EXT))
if N == 0:
    raise SystemExit(f"torch_e2e_jpeg (stub): no images in {a.data}")
rows = []
for mode, ips, extra in (("loader", 2217.9, dict(workers=a.workers)), ("gpu_decode", 12016.4, {}),
                         ("job_naive", 1090.1, dict(epochs=a.epochs))):
    n = N * (a.epochs if mode == "job_naive" else 1)
    r = dict(mode=mode, **extra, images=N, seconds=round(n / ips, 3), images_per_s=ips)
    if mode == "job_naive":
        r["final_loss"] = 1.5855
    rows.append(r); print(json.dumps(r), flush=True)

print(f"\nNVIDIA H200 (rehearsal stub)  cpus {os.cpu_count()}  images {N}")
for r in rows:
    print(f"{r['mode']:11} {r['images_per_s']:>10} img/s  {r['seconds']:>8} s")

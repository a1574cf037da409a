#!/usr/bin/env python3
"""Rehearsal stand-in for shared/anchors/torch_vgg16_finetune.py (no torch).

Same arguments; prints the same lines in the same format and order (one JSON
line per mode and precision, one "job" line per precision, then the table),
with the figures the real anchor printed on an H200 on 2026-12-04
(bench/runs/2026-12-04-h200/run1-torch.log) where that run measured the
combination, and made-up but plausible ones otherwise.
"""
import argparse, json, os, time

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=64)
p.add_argument("--size", type=int, default=224)
p.add_argument("--classes", type=int, default=5)
p.add_argument("--iters", type=int, default=30)
p.add_argument("--warmup", type=int, default=5)
p.add_argument("--precisions", default="fp32,bf16")
p.add_argument("--compile", default="")
a = p.parse_args()

# (precision, compile mode, batch) -> (trunk_fwd, step_full, step_cached) img/s, peak MiB x3
H200 = {
    ("fp32", "", 64): ((4790.1, 3820.5, 18075.2), (3353, 3670, 3670)),
    ("bf16", "", 64): ((8627.0, 6954.5, 19765.6), (1402, 1402, 1402)),
    ("fp32", "", 256): ((4847.9, 4085.1, 25999.4), (12946, 13263, 13263)),
    ("bf16", "", 256): ((8932.1, 7799.3, 58552.3), (4196, 4196, 4196)),
    ("bf16", "default", 256): ((15608.4, 12624.8, 58349.0), (3489, 3805, 3805)),
    ("bf16", "default", 64): ((14990.4, 10888.6, 23093.4), (989, 1305, 1305)),
    ("bf16", "reduce-overhead", 64): ((14651.5, 10768.1, 25801.1), (989, 989, 989)),
}
rows = []
for prec in a.precisions.split(","):
    ips3, mem3 = H200.get((prec, a.compile, a.batch)) or H200[(prec, "", 64)]
    for mode, ips, mem in zip(("trunk_fwd", "step_full", "step_cached"), ips3, mem3):
        r = dict(mode=mode, precision=prec + ("+compile" if a.compile else ""), batch=a.batch, size=a.size,
                 images_per_s=round(ips, 1), median_ms=round(a.batch / ips * 1e3, 3),
                 peak_mem_mib=round(mem * a.batch / 64 if (prec, a.compile, a.batch) not in H200 else mem))
        rows.append(r)
        print(json.dumps(r), flush=True)
        # VT_STUB_ANCHOR_SLEEP=S: hang S seconds after the first line, as a
        # run cut by gpu-check's time bound would (rehearses the cut)
        if len(rows) == 1 and os.environ.get("VT_STUB_ANCHOR_SLEEP"):
            time.sleep(float(os.environ["VT_STUB_ANCHOR_SLEEP"]))

N, E = 2000, 10
for prec in a.precisions.split(","):
    d = {r["mode"]: r["images_per_s"] for r in rows if r["precision"].split("+")[0] == prec}
    naive = N * E / d["step_full"]
    cached = N / d["trunk_fwd"] + N * E / d["step_cached"]
    print(json.dumps(dict(job=f"{E} epochs x {N} images", precision=prec,
                          naive_s=round(naive, 3), cached_s=round(cached, 3))))

print(f"\nNVIDIA H200 (rehearsal stub)  torch 2.11.0+rehearsal  cudnn 91900")
print(f"{'mode':12} {'prec':5} {'batch':>5} {'img/s':>10} {'ms':>8} {'peakMiB':>8}")
for r in rows:
    print(f"{r['mode']:12} {r['precision']:5} {r['batch']:>5} {r['images_per_s']:>10} {r['median_ms']:>8} {r['peak_mem_mib']:>8}")

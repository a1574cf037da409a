#!/usr/bin/env python3
"""scripts/gpu-summary.py, the GPU check's table, without a GPU.

1. On the raw lines of the H200 run of 2026-12-04 (h200-2026-12-04/: the
   vt-bench, decode, job and e2e lines as that run's summary.json kept
   them; torch.jsonl and torch_job.jsonl cut from run1-torch.log by
   gpu-check.sh's own grep and sed), it must print the tables that run
   printed (bench/runs/2026-12-04-h200/run1-summary.md) line for line,
   except the memory table, which has changed since (a compile column, the
   whole process's peak in brackets: "?" for that run, which did not
   report it), and the same figures in summary.json.
2. What a short or broken GPU session leaves: no files at all, lines cut
   off by a stage's time bound, a line missing a field.  The summary must
   still come out, every other table in it.
3. The rows added since that run: variants, the job again on the same
   daemon, the job with the resize on the host, the job with CUDA graphs.
Also the whole H100 run of 2026-12-06 (bench/runs/2026-12-06-h100): its
raw lines must give its summary.md and summary.json exactly.
Also `bash -n` of the scripts the check runs (a syntax error there would
waste a GPU session).  Standard library only; a few seconds.
"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
import vtpy  # noqa: E402

a = vtpy.args()
SRC = a.source
FIX = os.path.join(SRC, "tests", "gpucheck", "h200-2026-12-04")
RUN = os.path.join(SRC, "bench", "runs", "2026-12-04-h200")
SUMMARY = os.path.join(SRC, "scripts", "gpu-summary.py")
TMP = vtpy.tmpdir(a.keep)
TESTS = "2 passed, 2 failed, 0 skipped (failed: model_cuda parity_cuda)"


def summarize(out, tests=TESTS, gpu_name=None):
    env = {k: v for k, v in os.environ.items() if k != "GPU_NAME"}
    env["TESTS"] = tests
    if gpu_name:
        env["GPU_NAME"] = gpu_name
    r = subprocess.run([sys.executable, SUMMARY, out], capture_output=True, text=True, env=env, timeout=60)
    vtpy.check(r.returncode == 0, f"gpu-summary.py {out} exited {r.returncode}: {r.stderr[-2000:]}")
    with open(os.path.join(out, "summary.md")) as f:
        md = f.read()
    with open(os.path.join(out, "summary.json")) as f:
        js = json.load(f)
    return md, js, r.stderr


def fixture(name):
    d = os.path.join(TMP, name)
    shutil.copytree(FIX, d)
    return d


def sections(md):
    """summary.md cut at its blank lines, each block keyed by its first line."""
    return {b.split("\n", 1)[0]: b for b in md.strip().split("\n\n")}


# ---- 1. the recorded run -----------------------------------------------------------
md, js, err = summarize(fixture("h200"))
with open(os.path.join(RUN, "run1-summary.md")) as f:
    want = f.read()
got_s, want_s = sections(md), sections(want)
for key, block in want_s.items():
    if key.startswith("peak device memory") or key.startswith("| figure | batch | ours bf16 | ours fp32 | torch bf16 |"):
        continue  # the memory table, changed since
    vtpy.check(got_s.get(key) == block, f"block '{key}' differs from run1-summary.md:\n"
               f"--- recorded\n{block}\n--- now\n{got_s.get(key)}")
mem = [b for k, b in got_s.items() if k.startswith("| figure | batch | ours bf16 | ours fp32 | torch bf16 |")]
vtpy.check(len(mem) == 1 and "| trunk_fwd | 64 | 1457 (?) | 3008 (?) | 1402 | 989 | 3353 |" in mem[0]
           and "| step_full | 256 | 4465 (?) | 8292 (?) | 4196 | 3805 | 13263 |" in mem[0],
           f"memory table: {mem}")
with open(os.path.join(RUN, "run1-summary.json")) as f:
    rec = json.load(f)
for k in rec:
    vtpy.check(js.get(k) == rec[k], f"summary.json[{k}] differs from run1-summary.json")
vtpy.check(not err.strip(), f"gpu-summary.py wrote to stderr: {err}")

# ---- 1b. the H100 run of 2026-12-06, whole: its raw lines as gpu-check.sh kept them
# (bench/runs/2026-12-06-h100/run1-*.jsonl) give its summary.md and summary.json
RUN_H100 = os.path.join(SRC, "bench", "runs", "2026-12-06-h100")
h100 = os.path.join(TMP, "h100")
os.mkdir(h100)
for name in os.listdir(RUN_H100):
    if name.startswith("run1-") and name.endswith(".jsonl"):
        shutil.copy(os.path.join(RUN_H100, name), os.path.join(h100, name[len("run1-"):]))
md, js, err = summarize(h100, "4 passed, 0 failed, 0 skipped")
with open(os.path.join(RUN_H100, "run1-summary.md")) as f:
    want = f.read()
vtpy.check(md == want, f"the H100 run's summary.md differs:\n--- recorded\n{want}\n--- now\n{md}")
with open(os.path.join(RUN_H100, "run1-summary.json")) as f:
    rec = json.load(f)
for k in rec:  # (keys added since hold nothing for that run)
    vtpy.check(js.get(k) == rec[k], f"the H100 run's summary.json[{k}] differs")
vtpy.check(not err.strip(), f"gpu-summary.py wrote to stderr: {err}")

# ---- 2. short and broken sessions ----------------------------------------------------
empty = os.path.join(TMP, "empty")
os.mkdir(empty)
md, js, err = summarize(empty, "0 passed, 0 failed, 0 skipped")
vtpy.check(md.startswith("# GPU check: ?\n\ntests: 0 passed") and "| figure | batch |" in md,
           f"summary of nothing:\n{md}")
vtpy.check(js["figures"] == [] and js["job"] is None, f"summary.json of nothing: {js}")
md, js, err = summarize(empty, "0 passed, 0 failed, 0 skipped", gpu_name="NVIDIA H200")
vtpy.check(md.startswith("# GPU check: NVIDIA H200\n"), f"GPU_NAME, where nothing names the device:\n{md}")

cut = fixture("cut")
for name in os.listdir(cut):  # noise, and a last line cut in half by a time bound
    p = os.path.join(cut, name)
    with open(p) as f:
        text = f.read()
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    with open(p, "w") as f:
        f.write("Traceback (most recent call last):\n{not json\n[1, 2]\n" + text + last[:len(last) // 2])
md, js, err = summarize(cut)
for head in ("images/s", "peak device memory", "decode:", "whole job:", "PyTorch input pipelines"):
    vtpy.check(head in md, f"cut lines: no '{head}' in\n{md}")
vtpy.check("no table" not in md, f"cut lines broke a table:\n{md}")

broken = fixture("broken")
with open(os.path.join(broken, "decode.jsonl"), "a") as f:  # a row without its per_core
    f.write(json.dumps(dict(impl="vggtune", mode="decode", threads=3, images=2000, size=224, cpus=16,
                            bytes=1, reps=3, images_per_s=1.0)) + "\n")
md, js, err = summarize(broken)
vtpy.check("(decode_table: no table, KeyError" in md and "Traceback" in err,
           f"a broken decode row must be named in place of its table:\n{md}")
for head in ("images/s", "peak device memory", "whole job:", "PyTorch input pipelines"):
    vtpy.check(head in md, f"a broken decode row lost '{head}':\n{md}")

# ---- 3. rows added since --------------------------------------------------------------
more = fixture("more")
base = json.loads(open(os.path.join(more, "bench.jsonl")).readline())  # trunk_fwd bf16 64
with open(os.path.join(more, "bench.jsonl"), "a") as f:
    f.write(json.dumps(dict(base, label="bf16,graphs", images_per_s=20000.0, peak_mem_mib=1500,
                            process_peak_mib=1900, replayed=30)) + "\n")
job = json.loads(open(os.path.join(more, "job.jsonl")).readline())
with open(os.path.join(more, "job.jsonl"), "a") as f:
    f.write(json.dumps(dict(job, mode="job_repeat", run=2, seconds=3.4)) + "\n")
with open(os.path.join(more, "job_hostresize.jsonl"), "w") as f:
    f.write(json.dumps(dict(job, seconds=9.0, first_epoch_s=2.5)) + "\n")
with open(os.path.join(more, "job_graphs.jsonl"), "w") as f:
    f.write(json.dumps(dict(job, seconds=7.0)) + "\n")
    f.write(json.dumps(dict(job, mode="job_repeat", run=2, seconds=3.0)) + "\n")
md, js, err = summarize(more)
for row in ("| bf16,graphs | trunk_fwd | 64 | 20,000 | 18,266 | 1500 | 1457 | 30 |",
            "| job (cuda) | 10 x 2000 | 7.83 | 1.32 | 0.04 | 18.34 | 2.34 |",
            "| job again, same daemon (cuda) | 10 x 2000 | 3.40 | 1.32 | 0.04 | 18.34 | 5.40 |",
            "| job, resize on the host (cuda) | 10 x 2000 | 9.00 | 2.50 | 0.04 | 18.34 | 2.04 |",
            "| job, steps as CUDA graphs (cuda) | 10 x 2000 | 7.00 | 1.32 | 0.04 | 18.34 | 2.62 |",
            "| job again, same daemon, CUDA graphs (cuda) | 10 x 2000 | 3.00 | 1.32 | 0.04 | 18.34 | 6.11 |"):
    vtpy.check(row in md, f"no row '{row}' in\n{md}")
vtpy.check([e["figure"] for e in js["e2e_figures"]] ==
           ["decode", "decode", "job", "job_repeat", "job_hostresize", "job_graphs",
            "job_graphs_repeat", "job_best_case"],
           f"e2e_figures: {js['e2e_figures']}")

# ---- the scripts the check runs parse ---------------------------------------------
for s in ("gpu-check.sh", "gpu-prepare.sh", "bench-data.sh", "bench-decode.sh", "bench-job.sh",
          "accuracy-parity.sh"):
    r = subprocess.run(["bash", "-n", os.path.join(SRC, "scripts", s)], capture_output=True, text=True)
    vtpy.check(r.returncode == 0, f"bash -n scripts/{s}: {r.stderr}")

vtpy.done()

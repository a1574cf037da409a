#!/usr/bin/env python3
"""The table of scripts/gpu-check.sh, from the JSON lines its stages wrote.

  gpu-summary.py OUT

Environment: TESTS, the tests' one-line verdict; GPU_NAME, the card's name
for the title when no vt-bench or job line names the device.

Reads OUT/bench.jsonl (vt-bench), torch.jsonl and torch_job.jsonl (the
PyTorch anchor), decode.jsonl (scripts/bench-decode.sh), job.jsonl,
job_hostresize.jsonl and job_graphs.jsonl (scripts/bench-job.sh), e2e.jsonl (the anchor
torch_e2e_jpeg.py); any of them may be missing, empty or cut short (a stage
not started or killed at its time bound).  Writes OUT/summary.md (also
printed) and OUT/summary.json.  Each table is built on its own: one that
fails on unexpected input says so in its place, and the others still come
out (the run's raw files travel back in logs.tar.gz either way).
Standard library only, so it runs on any python3; tests/gpucheck.cmake runs
it on the recorded runs (H200 2026-12-04, H100 2026-12-06).
"""
import json
import os
import sys
import traceback

FIGS = ["trunk_fwd", "step_full", "step_cached"]


def load(out, name):
    """The JSON objects of OUT/NAME, one per line; bad or cut lines skipped."""
    rows = []
    try:
        with open(os.path.join(out, name)) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(r, dict):
                        rows.append(r)
    except OSError:
        pass
    return rows


def get(rows, mode, batch, prec, label=None):
    for r in rows:
        if r.get("mode") == mode and r.get("batch") == batch and r.get("precision") == prec and \
           (label is None or r.get("label") == label):
            return r
    return None


def v(r):
    return r.get("images_per_s") if r else None


def f(x):
    return f"{x:,.0f}" if x else "-"


class Summary:
    def __init__(self, out):
        self.out = out
        self.lines = []
        self.figures = []
        self.e2e_figures = []
        self.ours = [r for r in load(out, "bench.jsonl") if "mode" in r and "batch" in r]
        self.torch = [r for r in load(out, "torch.jsonl") if "mode" in r and "batch" in r]
        self.decode = load(out, "decode.jsonl")
        jobs = load(out, "job.jsonl")
        self.job = next((r for r in reversed(jobs) if r.get("mode") == "job"), None)
        self.job_repeat = next((r for r in reversed(jobs) if r.get("mode") == "job_repeat"), None)
        self.job_hostresize = next((r for r in reversed(load(out, "job_hostresize.jsonl"))
                                    if r.get("mode") == "job"), None)
        graphs = load(out, "job_graphs.jsonl")
        self.job_graphs = next((r for r in reversed(graphs) if r.get("mode") == "job"), None)
        self.job_graphs_repeat = next((r for r in reversed(graphs) if r.get("mode") == "job_repeat"),
                                      None)
        self.e2e = {r["mode"]: r for r in load(out, "e2e.jsonl") if "mode" in r}
        self.torch_job = load(out, "torch_job.jsonl")
        self.device = next((r["device"] for r in self.ours + [self.job or {}] if r.get("device")),
                           os.environ.get("GPU_NAME") or "?")
        self.batches = sorted({r["batch"] for r in self.ours + self.torch if isinstance(r["batch"], int)})

    def speed(self):
        ours, torch = self.ours, self.torch
        self.lines += ["images/s (median of 30 iterations; ratio = ours best / PyTorch best)", "",
                       "| figure | batch | ours bf16 | ours fp32 | torch fp32 | torch bf16 | torch bf16+compile "
                       "| torch bf16+compile reduce-overhead | torch best | ratio |",
                       "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for b in self.batches:
            for m in FIGS:
                ob, of = get(ours, m, b, "bf16", "bf16"), get(ours, m, b, "fp32", "fp32")
                tf, tb, tc = get(torch, m, b, "fp32"), get(torch, m, b, "bf16"), get(torch, m, b, "bf16+compile")
                tr = get(torch, m, b, "bf16+compile-ro")
                best_t = max([x for x in (v(tf), v(tb), v(tc), v(tr)) if x] or [0])
                best_o = max([x for x in (v(ob), v(of)) if x] or [0])
                ratio = best_o / best_t if best_t and best_o else None
                self.lines.append(f"| {m} | {b} | {f(v(ob))} | {f(v(of))} | {f(v(tf))} | {f(v(tb))} | {f(v(tc))} | "
                                  f"{f(v(tr))} | {f(best_t)} | " + (f"{ratio:.2f}" if ratio else "-") + " |")
                self.figures.append(dict(figure=m, batch=b, ours_bf16=v(ob), ours_fp32=v(of), torch_fp32=v(tf),
                                         torch_bf16=v(tb), torch_bf16_compile=v(tc), torch_bf16_compile_ro=v(tr),
                                         torch_best=best_t or None, ratio=ratio,
                                         ours_peak_mib=(ob or of or {}).get("peak_mem_mib"),
                                         torch_peak_mib=(tc or tb or tf or {}).get("peak_mem_mib")))

    def memory(self):
        ours, torch = self.ours, self.torch
        self.lines += ["peak device memory, MiB, both counted from after a first trunk pass (torch: "
                       "max_memory_allocated;",
                       "ours: every allocation, cuDNN search buffers included); ours over the whole process "
                       "in brackets", "",
                       "| figure | batch | ours bf16 | ours fp32 | torch bf16 | torch bf16+compile | torch fp32 |",
                       "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

        def g(r):
            return str(r.get("peak_mem_mib", "?")) if r else "-"

        def go(r):
            return f"{r.get('peak_mem_mib', '?')} ({r.get('process_peak_mib', '?')})" if r else "-"

        for b in self.batches:
            for m in FIGS:
                self.lines.append(f"| {m} | {b} | {go(get(ours, m, b, 'bf16', 'bf16'))} | "
                                  f"{go(get(ours, m, b, 'fp32', 'fp32'))} | {g(get(torch, m, b, 'bf16'))} | "
                                  f"{g(get(torch, m, b, 'bf16+compile'))} | {g(get(torch, m, b, 'fp32'))} |")

    def variants(self):
        ours = self.ours
        variants = [r for r in ours if r.get("label") not in ("bf16", "fp32")]
        if not variants:
            return False
        self.lines += ["variants (ours, images/s; peak MiB; timed steps replayed as CUDA graphs)", "",
                       "| label | figure | batch | images/s | same figure, default | peak MiB | default | replayed |",
                       "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in variants:
            base = get(ours, r["mode"], r["batch"], r.get("precision"), r.get("precision"))
            self.lines.append(f"| {r.get('label')} | {r['mode']} | {r['batch']} | {f(v(r))} | {f(v(base))} | "
                              f"{r.get('peak_mem_mib', '?')} | {base.get('peak_mem_mib', '?') if base else '-'} | "
                              f"{r.get('replayed', 0)} |")
        return True

    def decode_table(self):
        ours_dec = [r for r in self.decode if r.get("mode") == "decode"]
        torch_dec = {r.get("threads"): r for r in self.decode if r.get("mode") == "decode_torch"}
        if not ours_dec:
            return False
        d0 = ours_dec[0]
        self.lines += [f"decode: {d0['images']} JPEGs ({d0['bytes'] / 1024 / d0['images']:.0f} KiB mean) to "
                       f"{d0['size']}x{d0['size']}, {d0['cpus']} cpus, median of {d0['reps']} passes, page cache warm; "
                       "ratio = ours / PyTorch DataLoader (PIL, Resize, ToTensor, Normalize)", "",
                       "| threads | ours img/s | ours img/s/core | torch img/s | torch img/s/core | ratio |",
                       "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in ours_dec:
            t = torch_dec.get(r["threads"])
            ratio = r["images_per_s"] / t["images_per_s"] if t and t.get("images_per_s") else None
            self.e2e_figures.append(dict(figure="decode", threads=r["threads"], ours=r["images_per_s"],
                                         torch=t["images_per_s"] if t else None, ratio=ratio))
            self.lines.append(f"| {r['threads']} | {r['images_per_s']:,.0f} | {r['per_core']:,.0f} | "
                              + (f"{t['images_per_s']:,.0f} | {t['per_core']:,.0f} | "
                                 + (f"{ratio:.2f}" if ratio else "-") + " |" if t else "- | - | - |"))
        return True

    def job_table(self):
        job, naive = self.job, self.e2e.get("job_naive")
        if not (job or naive):
            return False
        self.lines += ["whole job: seconds (ratio = PyTorch / ours; PyTorch's naive job measured over "
                       "its epochs and scaled linearly to ours, as every epoch decodes and runs the trunk)", "",
                       "| figure | epochs x images | ours s | first epoch s | later epoch s | PyTorch s | ratio |",
                       "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        implied = None
        if naive and job:
            implied = naive["seconds"] * job["epochs"] / naive["epochs"] * job["images"] / naive["images"]
        for r, label, fig in ((job, "job", "job"), (self.job_repeat, "job again, same daemon", "job_repeat"),
                              (self.job_hostresize, "job, resize on the host", "job_hostresize"),
                              (self.job_graphs, "job, steps as CUDA graphs", "job_graphs"),
                              (self.job_graphs_repeat, "job again, same daemon, CUDA graphs",
                               "job_graphs_repeat")):
            if not r:
                continue

            def g(k):
                return f"{r[k]:.2f}" if r.get(k) is not None else "-"

            same = implied and r.get("epochs") == job["epochs"] and r.get("images") == job["images"]
            self.lines.append(f"| {label} ({r.get('backend', '?')}) | {r['epochs']} x {r['images']} | "
                              f"{g('seconds')} | {g('first_epoch_s')} | {g('later_epoch_mean_s')} | "
                              + (f"{implied:.2f} | {implied / r['seconds']:.2f} |" if same else "- | - |"))
            self.e2e_figures.append(dict(figure=fig, ours=r["seconds"], torch=implied if same else None,
                                         ratio=implied / r["seconds"] if same else None))
        if naive:
            self.lines.append(f"| job_naive (PyTorch, measured) | {naive['epochs']} x {naive['images']} | - | - | - | "
                              f"{naive['seconds']:.2f} | - |")
        # PyTorch's best case: the trunk once and cached steps (the anchor's
        # implied job, fastest bf16 variant) plus GPU decode of the files once
        jobs = [r for r in self.torch_job if r.get("precision") == "bf16" and r.get("cached_s")]
        gd = self.e2e.get("gpu_decode")
        if jobs and job:
            bestj = min(jobs, key=lambda r: r["cached_s"])
            dec = job["images"] / gd["images_per_s"] if gd and gd.get("images_per_s") else None
            best = bestj["cached_s"] * job["images"] / 2000 * job["epochs"] / 10 + (dec or 0)
            self.lines.append(f"| best case (PyTorch: trunk once, {bestj.get('variant', '?')}, "
                              + (f"+ GPU decode {dec:.2f} s" if dec else "decode not measured") + ") | "
                              f"{job['epochs']} x {job['images']} | - | - | - | {best:.2f} | {best / job['seconds']:.2f} |")
            self.e2e_figures.append(dict(figure="job_best_case", ours=job["seconds"], torch=best,
                                         ratio=best / job["seconds"], variant=bestj.get("variant"), decode_s=dec))
        return True

    def pipelines(self):
        refs = [self.e2e[k] for k in ("loader", "gpu_decode") if k in self.e2e]
        if not refs:
            return False
        self.lines += ["PyTorch input pipelines on the GPU machine (torch_e2e_jpeg.py, same files): "
                       + "; ".join(f"{r['mode']}{' (' + str(r['workers']) + ' workers)' if 'workers' in r else ''} "
                                   f"{r['images_per_s']:,.0f} img/s" for r in refs)]
        return True

    def build(self, tests):
        self.lines = [f"# GPU check: {self.device}", "", f"tests: {tests}"]
        for section in (self.speed, self.memory, self.variants, self.decode_table, self.job_table, self.pipelines):
            mark = len(self.lines)
            self.lines.append("")
            try:
                if section() is False:
                    del self.lines[mark:]
            except Exception as e:  # one table's bad input must not lose the others
                traceback.print_exc()
                del self.lines[mark + 1:]
                self.lines.append(f"({section.__name__}: no table, {type(e).__name__}: {e}; "
                                  "the raw files are in logs.tar.gz)")
        return "\n".join(self.lines) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gpu-summary.py OUT")
    out = sys.argv[1]
    tests = os.environ.get("TESTS", "?")
    s = Summary(out)
    md = s.build(tests)
    with open(os.path.join(out, "summary.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(dict(device=s.device, tests=tests, figures=s.figures, ours=s.ours, torch=s.torch,
                       e2e_figures=s.e2e_figures, decode=s.decode, job=s.job, job_repeat=s.job_repeat,
                       job_hostresize=s.job_hostresize, job_graphs=s.job_graphs,
                       job_graphs_repeat=s.job_graphs_repeat, e2e=list(s.e2e.values())), fh, indent=1)
    print(md)


if __name__ == "__main__":
    main()

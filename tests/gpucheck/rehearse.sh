#!/usr/bin/env bash
# Rehearses scripts/gpu-check.sh on a machine without a GPU, so that a
# mistake in the script (a parser, a table, a missing file, a stage's
# bounds) is found here rather than in a rare, 15-minute GPU session.
#
#   tests/gpucheck/rehearse.sh [RUN_DIR] [WORK]
#
# RUN_DIR: a bundle from scripts/gpu-prepare.sh (default build-gpu/run);
# WORK: scratch, emptied first (default ${TMPDIR:-/tmp}/vt-rehearsal).
# Every stage runs, as on the GPU machine, except what needs the card:
#   - gpu-check.sh runs with REHEARSAL=1: vt-bench and the whole job on the
#     CPU backend at image size 32 (vt-bench: 2 timed iterations; the job:
#     100 images, 2 epochs).  The CPU backend has no bf16: its rows say
#     fp32 under the label bf16, so the "ours bf16" columns stay empty.
#   - the GPU tests and the CUDA half of accuracy-parity.sh run and skip
#     (exit 77: no CUDA device), as they would on a broken card.
#   - tests/gpucheck/bin comes first on PATH: nvidia-smi answers the query
#     gpu-check makes, python3 answers the torch probes and runs
#     tests/gpucheck/torch_decode_ref.py for bench/torch_decode_ref.py, and
#     passes everything else to the real python3 (VT_REAL_PYTHON).
#   - ANCHORS_DIR=tests/gpucheck/anchors: stand-ins for the PyTorch anchors
#     that print exactly their lines, with an H200's figures of 2026-12-04.
# The environment passes through (QUICK=1, SKIP_*=1, BUDGET_S...): each
# variant of the check can be rehearsed.  Takes about 4 minutes on 2 cores.
# With a BUDGET_S too short for every stage (BUDGET_S=75 cuts vt-bench at
# batch 256 mid-run), the stages it leaves out are reported missing below:
# what to look at then is that the check ended in time and its summary
# came out from what there was.
#
# Then checks what comes back: exactly summary.md, summary.json and
# logs.tar.gz in OUT (the device tool returns 8 files at most), every
# table and every log the stages write, and no Python traceback or shell
# error in the console.  Exits 1 on a miss, naming it.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
stubs=$here/tests/gpucheck
run=${1:-$here/build-gpu/run}
work=${2:-${TMPDIR:-/tmp}/vt-rehearsal}
[ -f "$run/gpu-tests.txt" ] || { echo "rehearse: $run is not a gpu-prepare bundle (scripts/gpu-prepare.sh)"; exit 2; }
[ -s "$run/gpu-tests.txt" ] || { echo "rehearse: $run/gpu-tests.txt lists no GPU test (run scripts/gpu-prepare.sh again)"; exit 2; }
rm -rf "$work"
mkdir -p "$work/tmp"
VT_REAL_PYTHON=${VT_REAL_PYTHON:-$(command -v python3)}
export VT_REAL_PYTHON
echo "rehearse: bash scripts/gpu-check.sh $run (console: $work/console.log)"
s=$(date +%s)
PATH=$stubs/bin:$PATH ANCHORS_DIR=$stubs/anchors OUT=$work/out E2E_DATA=$work/data \
TMPDIR=$work/tmp REHEARSAL=1 bash "$here/scripts/gpu-check.sh" "$run" >"$work/console.log" 2>&1
rc=$?
took=$(( $(date +%s) - s ))
echo "rehearse: gpu-check.sh exited $rc after $took s"

bad=0
miss() { echo "rehearse: MISSING $*"; bad=1; }
# the promise of gpu-check.sh's header: BUDGET_S + 5 s of kill grace + the summary
[ "$took" -le $(( ${BUDGET_S:-540} + 40 )) ] || miss "an end by BUDGET_S + 40 s: took $took s"
out=$work/out
got=$(cd "$out" 2>/dev/null && ls | sort | tr '\n' ' ')
[ "$got" = "logs.tar.gz summary.json summary.md " ] || miss "OUT should hold exactly logs.tar.gz summary.json summary.md; holds: $got"
logs=$(tar -tzf "$out/logs.tar.gz" 2>/dev/null | sort | tr '\n' ' ')
want="bench.jsonl bench.log torch.jsonl torch_job.jsonl torch.log"
[ "${SKIP_E2E:-0}" = 1 ] || want="$want data.log job.jsonl job.log job-daemon.log e2e.jsonl e2e.log"
[ "${SKIP_E2E:-0}" = 1 ] || [ "${SKIP_DECODE:-0}" = 1 ] || want="$want decode.jsonl decode.log"
[ "${SKIP_TESTS:-0}" = 1 ] || want="$want tests.log accuracy.log"
for f in $want; do
  case " $logs" in *" $f "*) ;; *) miss "$f in logs.tar.gz (holds: $logs)" ;; esac
done
tables=("| figure | batch | ours bf16 | ours fp32 | torch fp32" "peak device memory" "^tests: ")
[ "${SKIP_BENCH:-0}" = 1 ] || tables+=("| label | figure | batch | images/s")
if [ "${SKIP_E2E:-0}" != 1 ]; then
  tables+=("| job (cpu) | " "| job again, same daemon (cpu) | " "| job_naive (PyTorch, measured) |"
           "| best case (PyTorch" "PyTorch input pipelines")
  [ "${SKIP_DECODE:-0}" = 1 ] || tables+=("^decode: " "| threads | ours img/s")
  [ "${SKIP_BENCH:-0}" = 1 ] || tables+=("| job, resize on the host (cpu) | ")
fi
for t in "${tables[@]}"; do
  grep -qF -- "${t#^}" "$out/summary.md" 2>/dev/null || miss "'$t' in summary.md"
done
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["figures"] and d["torch"] and (d["ours"] or sys.argv[2] == "1")' \
  "$out/summary.json" "${SKIP_BENCH:-0}" 2>/dev/null || miss "figures, torch and (unless SKIP_BENCH=1) ours in summary.json"
if grep -nE "Traceback|command not found|No such file|unbound variable|syntax error|: line [0-9]+: " "$work/console.log"; then
  miss "a clean console: the lines above are errors of the script"
fi
if [ $bad = 0 ]; then
  echo "rehearse: ok - every stage ran, summary.md:"
  sed 's/^/  /' "$out/summary.md"
fi
exit $bad

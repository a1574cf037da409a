#!/usr/bin/env bash
# The "job" figure of shared/BENCH.md: a whole fine-tuning job through the
# real daemon and client, JPEG files on disk in, from submit to the weights
# written.
#
#   scripts/bench-job.sh [--images N] [--epochs E] [--backend auto|cpu|cuda]
#                        [--size S] [--batch B] [--threads N] [--data DIR]
#                        [--build DIR] [--json FILE] [--repeat N] [--log FILE]
#                        [--keep]
#
#   --images N    dataset size, a multiple of 5 (default 2000)
#   --epochs E    (default 10)
#   --backend B   the daemon's backend (default auto)
#   --size S      image_size of the job, a multiple of 32 (default 224)
#   --batch B     batch_size of the job (default 64)
#   --threads N   the daemon's decode/CPU threads (default: its own, all cores)
#   --data DIR    dataset (default ${TMPDIR:-/tmp}/vt-bench-data-N); made by
#                 scripts/bench-data.sh unless it already holds N images
#   --build DIR   a build tree, or a gpu-prepare bundle with bin/ (default build)
#   --json FILE   also append the result's JSON line to FILE
#   --repeat N    submit the same job N times, one after the other, to the
#                 same daemon (default 1; see below)
#   --log FILE    copy the daemon's log there at the end; it runs at debug
#                 level with timestamps (VGGTUNE_LOG_TIME), so the log shows
#                 where each job's time went ("prepared in ...", the
#                 algorithm choices, the epochs)
#   --keep        keep the temporary directory (daemon log, job outputs)
# Environment: PYTHON, a python3 (default python3) for the JSON report.
#
# What runs: vggtuned on a socket and state directory in a fresh temporary
# directory, with its resident trunk (the seeded random VGG16: speed does
# not depend on the weights' values); once it says it is ready, the job of
# BENCH.md - finetune (block 5 + head Dense 1024 ReLU, Dense 128 ReLU,
# Dense 5), SGD lr 1e-3, momentum 0.9, Nesterov, no decay (as PyTorch's
# SGD), batch 64, shuffled, no validation - is submitted as a job document
# with `vggtune submit --spec FILE --watch`.  Every file is read once first,
# so the page cache is warm (as for the references).
#
# Reported (one JSON line, "mode":"job"): seconds from just before the
# submit to the watch returning (the job is done and model.safetensors is
# durably written), the same up to model.safetensors' modification time,
# and from the job's metrics.jsonl the first epoch's seconds (decode + trunk,
# feature cache filled), the later epochs' mean (from the cache), and the
# rest (preparing the job, writing the outputs).  Daemon start-up is
# reported apart: the daemon is long-running, the trunk resident.
#
# With --repeat N the runs after the first ("mode":"job_repeat", "run": k)
# show a daemon that has already served this job: its convolution
# algorithms are chosen (a backend keeps them for its life), while the
# features are computed again (a feature cache lives only as long as a job
# using it; "first_epoch_cached" says whether one was found).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
images=2000 epochs=10 backend=auto size=224 batch=64 threads="" data="" build=$here/build
json="" keep=0 repeat=1 log=""
usage() { sed -n '6,26p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --keep) keep=1; shift; continue ;;
  esac
  [ $# -ge 2 ] || { echo "bench-job: $1 needs a value" >&2; exit 2; }
  case $1 in
    --images) images=$2 ;; --epochs) epochs=$2 ;; --backend) backend=$2 ;; --size) size=$2 ;;
    --batch) batch=$2 ;; --threads) threads=$2 ;; --data) data=$2 ;; --build) build=$2 ;;
    --json) json=$2 ;; --repeat) repeat=$2 ;; --log) log=$2 ;;
    *) echo "bench-job: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift 2
done
for v in epochs size batch repeat ${threads:+threads}; do
  case ${!v} in '' | *[!0-9]* | 0) echo "bench-job: --$v must be a positive integer: ${!v}" >&2; exit 2 ;; esac
done
case $backend in auto | cpu | cuda) ;; *) echo "bench-job: --backend must be auto, cpu or cuda" >&2; exit 2 ;; esac
data=${data:-${TMPDIR:-/tmp}/vt-bench-data-$images}
PYTHON=${PYTHON:-python3}

pick() { for f in "$@"; do [ -x "$f" ] && { echo "$f"; return 0; }; done; echo "bench-job: none of $* is built" >&2; return 1; }
vggtuned=$(pick "$build/daemon/vggtuned" "$build/bin/vggtuned")
vggtune=$(pick "$build/client/vggtune" "$build/bin/vggtune")
gendata=$(pick "$build/tools/vt-gendata" "$build/bin/vt-gendata")

"$here/scripts/bench-data.sh" "$gendata" "$data" "$images"
data=$(cd "$data" && pwd)
find "$data" -name '*.jpg' -exec cat {} + >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vt-bench-job.XXXXXX")
daemon=""
cleanup() {
  # SIGTERM, then SIGKILL after 10 s: a daemon whose backend failed to start
  # has been seen to hang on the way out (see the wait below)
  if [ -n "$daemon" ]; then
    kill -TERM "$daemon" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$daemon" 2>/dev/null && echo "bench-job: vggtuned ignored SIGTERM; killed" >&2
    wait "$daemon" 2>/dev/null || true
  fi
  [ -z "$log" ] || cp "$tmp/vggtuned.log" "$log" 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "bench-job: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT
sock=$tmp/vggtune.sock
cli() { "$vggtune" --socket "$sock" "$@"; }

echo "== vggtuned --backend $backend${threads:+ --threads $threads} (log: $tmp/vggtuned.log)" >&2
s0=$(date +%s.%N)
if [ -n "$log" ]; then export VGGTUNE_LOG=debug VGGTUNE_LOG_TIME=1; fi
"$vggtuned" --socket "$sock" --state-dir "$tmp/state" --backend "$backend" \
  ${threads:+--threads "$threads"} >"$tmp/vggtuned.log" 2>&1 &
daemon=$!
ready=""
for _ in $(seq 1 1200); do
  # an error before ready (a backend that cannot start) is final, even if the
  # process has not exited
  if ! kill -0 "$daemon" 2>/dev/null || grep -q ': error: ' "$tmp/vggtuned.log"; then
    cat "$tmp/vggtuned.log" >&2
    echo "bench-job: vggtuned failed to start" >&2
    exit 1
  fi
  st=$(cli --json status 2>/dev/null) && case $st in *'"ready":true'*) ready=1; break ;; esac
  sleep 0.1
done
[ -n "$ready" ] || { cat "$tmp/vggtuned.log" >&2; echo "bench-job: vggtuned not ready after 120 s" >&2; exit 1; }
s1=$(date +%s.%N)

# One run: submit, watch, report (K: 1 for the first).
run_job() {
  local k=$1 out=$tmp/out$1 spec=$tmp/job$1.json t0 t1 line
  cat >"$spec" <<EOF
{"name": "bench-job-$k", "mode": "finetune",
 "data": {"train": "$data", "image_size": $size, "shuffle": true},
 "head": {"dense": [1024, 128], "dropout": 0.0},
 "optimizer": {"lr": 0.001, "momentum": 0.9, "nesterov": true, "decay": 0},
 "epochs": $epochs, "batch_size": $batch, "seed": 1, "output": "$out"}
EOF
  echo "== vggtune submit --spec $spec --watch" >&2
  t0=$(date +%s.%N)
  if ! cli submit --spec "$spec" --watch >"$tmp/watch$k.log" 2>&1; then
    cat "$tmp/watch$k.log" >&2
    echo "bench-job: the job failed (daemon log: $tmp/vggtuned.log)" >&2
    keep=1
    exit 1
  fi
  t1=$(date +%s.%N)
  tail -n 3 "$tmp/watch$k.log" >&2
  [ -f "$out/model.safetensors" ] || { echo "bench-job: the job ended without $out/model.safetensors" >&2; keep=1; exit 1; }
  line=$(STATUS="$st" "$PYTHON" - "$out" "$s0" "$s1" "$t0" "$t1" "$images" "$epochs" "$size" "$batch" "$k" <<'EOF'
import json, os, sys
out, s0, s1, t0, t1 = sys.argv[1], *map(float, sys.argv[2:6])
images, epochs, size, batch, run = map(int, sys.argv[6:11])
daemon = json.loads(os.environ["STATUS"])["daemon"]
with open(os.path.join(out, "metrics.jsonl")) as f:
    m = [json.loads(l) for l in f if l.strip()]
if len(m) != epochs:
    sys.exit(f"bench-job: metrics.jsonl has {len(m)} epochs, wanted {epochs}")
ep = [e["seconds"] for e in m]
later = ep[1:]
r = dict(impl="vggtune", mode="job" if run == 1 else "job_repeat", run=run,
         backend=daemon["backend"], device=daemon["device"],
         images=images, epochs=epochs, size=size, batch=batch,
         seconds=round(t1 - t0, 3),
         to_model_mtime_s=round(os.stat(os.path.join(out, "model.safetensors")).st_mtime - t0, 3),
         first_epoch_s=round(ep[0], 3), first_epoch_cached=bool(m[0].get("cached")),
         later_epoch_mean_s=round(sum(later) / len(later), 3) if later else None,
         epochs_sum_s=round(sum(ep), 3), other_s=round(t1 - t0 - sum(ep), 3),
         cached_epochs=sum(1 for e in m if e.get("cached")),
         images_per_s=round(images * epochs / (t1 - t0), 1), final_loss=round(m[-1]["loss"], 4),
         daemon_start_s=round(s1 - s0, 3))
print(json.dumps(r))
EOF
)
  echo "$line"
  [ -z "$json" ] || echo "$line" >>"$json"
}
for k in $(seq 1 "$repeat"); do
  run_job "$k"
done
exit 0

#!/usr/bin/env bash
# The decode figure of issue 6: images/s per core and in total, vggtune's
# decode pool against PyTorch's DataLoader, measured in the same run on the
# same files.
#
#   scripts/bench-decode.sh [--images N] [--size S] [--threads N] [--reps R]
#                           [--data DIR] [--build DIR] [--json FILE]
#                           [--resize host|device]
#
#   --images N   dataset size, a multiple of 5 (default 1000)
#   --size S     decode to S x S (default 224)
#   --threads N  the "all threads" count (default: nproc); 1 is always run
#   --reps R     timed passes per count, median reported (default 3)
#   --data DIR   dataset (default ${TMPDIR:-/tmp}/vt-bench-data-N); made by
#                scripts/bench-data.sh unless it already holds N images
#   --build DIR  a build tree, or a gpu-prepare bundle with bin/ (default build)
#   --json FILE  also append both sides' JSON lines to FILE
#   --resize W   ours resizes on the host (CPU-backend jobs, default) or only
#                decodes and leaves the resize to the device (CUDA jobs)
# Environment: PYTHON, a python3 with torch and torchvision (default: the
# first of python3, /usr/bin/python3 that has them).
#
# Runs build's vt-decodebench (bench/vt_decodebench.c) and
# bench/torch_decode_ref.py at 1 and N threads/workers; each reads every
# file once first (warm page cache) and reports the median of R passes.
# Prints the machine, the exact commands and a table with ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
images=1000 size=224 threads=$(nproc) reps=3 data="" build=$here/build json="" resize=host
usage() { sed -n '6,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { [ "$1" = -h ] || [ "$1" = --help ] || { echo "bench-decode: $1 needs a value" >&2; exit 2; }; }
  case $1 in
    --images) images=$2 ;; --size) size=$2 ;; --threads) threads=$2 ;; --reps) reps=$2 ;;
    --data) data=$2 ;; --build) build=$2 ;; --json) json=$2 ;; --resize) resize=$2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-decode: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift 2
done
data=${data:-${TMPDIR:-/tmp}/vt-bench-data-$images}

# binaries: a build tree (bench/, tools/) or a bundle (bin/)
pick() { for f in "$@"; do [ -x "$f" ] && { echo "$f"; return 0; }; done; echo "bench-decode: none of $* is built" >&2; return 1; }
decodebench=$(pick "$build/bench/vt-decodebench" "$build/bin/vt-decodebench")
gendata=$(pick "$build/tools/vt-gendata" "$build/bin/vt-gendata")
if [ -z "${PYTHON:-}" ]; then
  for p in python3 /usr/bin/python3; do
    if "$p" -c 'import torch, torchvision' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
[ -n "${PYTHON:-}" ] || { echo "bench-decode: no python3 with torch and torchvision (set PYTHON)" >&2; exit 1; }

"$here/scripts/bench-data.sh" "$gendata" "$data" "$images"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
counts=1; [ "$threads" != 1 ] && counts=1,$threads
ours=("$decodebench" --data "$data" --size "$size" --threads "$counts" --reps "$reps"
      --resize "$resize" --json "$tmp/ours.jsonl")
ref=("$PYTHON" "$here/bench/torch_decode_ref.py" --data "$data" --size "$size" --workers "$counts"
     --reps "$reps" --json "$tmp/torch.jsonl")
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== ${ours[*]}"
"${ours[@]}"
echo "== ${ref[*]}"
"${ref[@]}"
[ -n "$json" ] && cat "$tmp/ours.jsonl" "$tmp/torch.jsonl" >>"$json"

echo
CPU=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') \
LOAD="$load_before -> $(cut -d' ' -f1-3 /proc/loadavg)" \
"$PYTHON" - "$tmp/ours.jsonl" "$tmp/torch.jsonl" <<'EOF'
import json, os, sys, time
ours, ref = ([json.loads(l) for l in open(f) if l.startswith("{")] for f in sys.argv[1:3])
o0, r0 = ours[0], ref[0]
if (o0["images"], o0["bytes"]) != (r0["images"], r0["bytes"]):
    sys.exit(f"bench-decode: the two sides read different data: ours {o0['images']} images "
             f"{o0['bytes']} bytes, torch {r0['images']} images {r0['bytes']} bytes")
print(f"machine: {o0['cpus']} cpus, {os.environ['CPU']}; load average {os.environ['LOAD']}")
print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
print(f"data: {o0['images']} JPEGs, {o0['bytes'] / 1024 / o0['images']:.1f} KiB mean, "
      f"decoded to {o0['size']}x{o0['size']}; median of {o0['reps']} passes, page cache warm")
if o0.get("resize") == "device":
    print("vggtune: decode only (DCT-scaled), resize left to the device as in CUDA jobs; "
          "PyTorch: decode + resize")
print()
print("| threads | vggtune img/s | vggtune img/s/core | PyTorch DataLoader img/s | PyTorch img/s/core | ratio |")
print("| ---: | ---: | ---: | ---: | ---: | ---: |")
for o in ours:
    r = next((x for x in ref if x["threads"] == o["threads"]), None)
    rs = f"{r['images_per_s']:.1f} | {r['per_core']:.1f} | {o['images_per_s'] / r['images_per_s']:.2f}" if r else "- | - | -"
    print(f"| {o['threads']} | {o['images_per_s']:.1f} | {o['per_core']:.1f} | {rs} |")
EOF

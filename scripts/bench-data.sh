#!/usr/bin/env bash
# The benchmark dataset of scripts/bench-decode.sh, scripts/bench-job.sh and
# the GPU check: N synthetic 500x375 JPEGs in 5 classes, flow_from_directory
# layout (DIR/<class>/imgNNNNN.jpg, no train/val split), so vggtune, the
# PyTorch references and shared/anchors/torch_e2e_jpeg.py read the same files.
#
#   scripts/bench-data.sh VT_GENDATA DIR N
#
# VT_GENDATA is the vt-gendata binary.  DIR is left alone when it already
# holds exactly N .jpg files in class folders; otherwise it is replaced.
#
# Why vt-gendata rather than the anchor's PIL generator (--make): it is the
# project's own seeded generator (the same arguments give byte-identical
# files on every machine), it writes the layout directly, it needs no Python
# and it is fast enough to run inside the GPU check's time budget.  Its
# images carry per-pixel noise, which makes them about 52 KiB each at
# quality 90 (the anchor's are about 18 KiB), closer to the entropy of real
# photos of that size; a decoder is not flattered by smooth files.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: scripts/bench-data.sh VT_GENDATA DIR N   (N a multiple of 5)" >&2
  exit 2
fi
gendata=$1 dir=$2 n=$3
case $n in '' | *[!0-9]*) echo "bench-data: N must be a number: $n" >&2; exit 2 ;; esac
if [ "$n" -lt 5 ] || [ $((n % 5)) -ne 0 ]; then
  echo "bench-data: N must be a positive multiple of 5 (5 classes): $n" >&2
  exit 2
fi
have=0
[ -d "$dir" ] && have=$(find "$dir" -mindepth 2 -maxdepth 2 -name '*.jpg' | wc -l)
if [ "$have" -eq "$n" ]; then
  echo "bench-data: $dir already holds $n images" >&2
  exit 0
fi
[ -x "$gendata" ] || { echo "bench-data: $gendata is not an executable vt-gendata" >&2; exit 1; }
rm -rf "$dir"
s=$SECONDS
"$gendata" --out "$dir" --classes 5 --per-class $((n / 5)) --size 500x375 --seed 1 >&2
echo "bench-data: $n images in $dir ($(du -sm "$dir" | cut -f1) MiB, $((SECONDS - s)) s)" >&2

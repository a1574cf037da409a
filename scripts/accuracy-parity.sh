#!/usr/bin/env bash
# Training parity between backends: the same jobs, on the same generated
# dataset, trained in the foreground on the CPU backend and on the CUDA
# backend (fp32 and bf16), must reach the same validation accuracy.
#
#   scripts/accuracy-parity.sh BIN_DIR WORK_DIR
#
# BIN_DIR holds vggtuned and vt-gendata (a gpu-prepare bundle's bin/).
# WORK_DIR is scratch (data, job documents, outputs), emptied first.
#
# Jobs: the demo's dataset (4 classes x 100 training and 25 validation 48x48
# JPEGs) at image_size 32, batch 16, seed 1, on the embedded seeded random
# trunk:
#   finetune    6 epochs (block 5 + head), as `make demo`
#   bottleneck  6 epochs (frozen trunk through block 5, features cached)
# Each runs as cpu/fp32, cuda/fp32 and cuda/bf16.
# Passes when every run's final val_accuracy is within 0.05 (5 of the 100
# validation images) of the CPU run of the same job for finetune, which must
# also reach 0.90 (the demo's bar), and within 0.10 for bottleneck (a weak
# classifier on random features, about 0.6, whose borderline images flip
# with the features' rounding).  Each run's model is then evaluated on the
# validation folder (`vggtuned eval`, on the same backend, in the precision
# the job trained in): its accuracy must be the last epoch's val_accuracy
# within 0.02.  Prints one line per run and exits 1 on a miss; exits 77
# when the CUDA backend cannot start.
set -uo pipefail
bin=${1:?usage: accuracy-parity.sh BIN_DIR WORK_DIR}
work=${2:?usage: accuracy-parity.sh BIN_DIR WORK_DIR}
vggtuned=$bin/vggtuned
rm -rf "$work"
mkdir -p "$work"
"$bin/vt-gendata" --out "$work/data" --classes 4 --per-class 100 --val-per-class 25 \
  --size 48x48 --seed 7 >/dev/null || { echo "accuracy-parity: vt-gendata failed"; exit 1; }

# final val_accuracy of OUT/metrics.csv (its last row)
final_acc() {
  python3 - "$1/metrics.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(rows[-1]["val_accuracy"])
EOF
}

fail=0
for mode in finetune bottleneck; do
  ref=""
  for run in cpu:fp32 cuda:fp32 cuda:bf16; do
    backend=${run%%:*} precision=${run##*:}
    out=$work/out-$mode-$backend-$precision
    spec=$work/$mode-$backend-$precision.json
    cat >"$spec" <<EOF
{"name": "parity-$mode", "mode": "$mode",
 "data": {"train": "$work/data/train", "val": "$work/data/val", "image_size": 32},
 "epochs": 6, "batch_size": 16, "seed": 1, "precision": "$precision",
 "output": "$out"}
EOF
    s=$(date +%s.%N)
    "$vggtuned" run "$spec" --backend "$backend" >"$out.log" 2>&1
    rc=$?
    secs=$(python3 -c "import time; print(f'{time.time() - $s:.1f}')")
    if [ $rc != 0 ]; then
      if [ "$backend" = cuda ] && grep -q "no usable CUDA device" "$out.log"; then
        echo "SKIP accuracy-parity: the CUDA backend is not available: $(tail -1 "$out.log")"
        exit 77
      fi
      echo "FAIL $mode $backend/$precision: vggtuned run exited $rc: $(tail -2 "$out.log" | tr '\n' ' ')"
      fail=1
      continue
    fi
    acc=$(final_acc "$out")
    [ -n "$ref" ] || ref=$acc
    ev=$("$vggtuned" eval --backend "$backend" --json "$out/model.safetensors" "$work/data/val" \
         2>>"$out.log" | python3 -c "import json, sys; print(json.load(sys.stdin)['accuracy'])")
    verdict=$(python3 -c "
acc, ref, mode, ev = float('$acc'), float('$ref'), '$mode', '$ev'
tol = 0.05 if mode == 'finetune' else 0.10
bad = []
if abs(acc - ref) > tol: bad.append(f'differs from the CPU run ({ref:.2f}) by more than {tol}')
if mode == 'finetune' and acc < 0.90: bad.append('below 0.90')
if not ev: bad.append('vggtuned eval failed (see the log)')
elif abs(float(ev) - acc) > 0.02: bad.append(f'vggtuned eval says {float(ev):.2f}')
print('ok' if not bad else '; '.join(bad))")
    if [ "$verdict" = ok ]; then
      echo "ok   $mode $backend/$precision: val_accuracy $acc, eval $ev (${secs}s)"
    else
      echo "FAIL $mode $backend/$precision: val_accuracy $acc: $verdict (${secs}s)"
      fail=1
    fi
  done
done
exit $fail

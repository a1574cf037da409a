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
# within 0.02.  A CUDA run's model also classifies 8 validation images
# (`vggtuned predict`) on the CUDA backend and on the CPU backend: the
# probabilities must agree within 0.002 (fp32) or 0.05 (bf16: the CUDA
# backend predicts in bf16, the CPU in fp32; a wrong layout or offset moves
# them by far more).  Prints one line per run and exits 1 on a miss; exits
# 77 when the CUDA backend cannot start.
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

# The largest difference between the probabilities the CUDA and the CPU
# backend give for images $2... with model $1, or "failed: WHY".
predict_diff() {
  local model=$1; shift
  "$vggtuned" predict --backend cuda --json "$model" "$@" >"$model.cuda.json" 2>>"$model.predict.log" &&
    "$vggtuned" predict --backend cpu --json "$model" "$@" >"$model.cpu.json" 2>>"$model.predict.log" ||
    { echo "failed: vggtuned predict: $(tail -1 "$model.predict.log")"; return; }
  python3 - "$model.cuda.json" "$model.cpu.json" <<'EOF'
import json, sys
gpu, cpu = (json.load(open(f)) for f in sys.argv[1:3])
print(max(abs(a - b) for g, c in zip(gpu, cpu)
          for a, b in zip(g["probabilities"], c["probabilities"])) if len(gpu) == len(cpu)
      else "failed: %d and %d predictions" % (len(gpu), len(cpu)))
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
    pd=""
    [ "$backend" != cuda ] ||
      pd=$(predict_diff "$out/model.safetensors" "$work"/data/val/*/img0000[01].jpg)
    verdict=$(python3 -c "
acc, ref, mode, ev, pd = float('$acc'), float('$ref'), '$mode', '$ev', '$pd'
if pd.startswith('failed'): bad = [pd]
elif pd and float(pd) > (0.002 if '$precision' == 'fp32' else 0.05):
    bad = [f'predict: CUDA and CPU probabilities differ by {float(pd):.4f}']
else: bad = []
tol = 0.05 if mode == 'finetune' else 0.10
if abs(acc - ref) > tol: bad.append(f'differs from the CPU run ({ref:.2f}) by more than {tol}')
if mode == 'finetune' and acc < 0.90: bad.append('below 0.90')
if not ev: bad.append('vggtuned eval failed (see the log)')
elif abs(float(ev) - acc) > 0.02: bad.append(f'vggtuned eval says {float(ev):.2f}')
print('ok' if not bad else '; '.join(bad))")
    if [ "$verdict" = ok ]; then
      echo "ok   $mode $backend/$precision: val_accuracy $acc, eval $ev${pd:+, predict vs CPU $pd} (${secs}s)"
    else
      echo "FAIL $mode $backend/$precision: val_accuracy $acc: $verdict (${secs}s)"
      fail=1
    fi
  done
done
exit $fail

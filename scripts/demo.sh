#!/usr/bin/env bash
# make demo: a finetune job submitted, watched and finished through the daemon.
#   scripts/demo.sh BUILD_DIR
# Generates a small image dataset, starts vggtuned on its embedded defaults (a
# seeded random trunk; a temporary socket and state directory under
# BUILD_DIR/demo), submits a finetune job with `vggtune submit --watch`, shows
# the job, predicts a few images, and stops the daemon.  Fails if the final
# validation accuracy is below 0.90.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
demo=$build/demo
vggtuned=$build/daemon/vggtuned
vggtune=$build/client/vggtune
sock=$demo/vggtune.sock

rm -rf "$demo"
mkdir -p "$demo"
echo "== demo data: 4 classes of generated JPEGs in $demo/data"
"$build/tools/vt-gendata" --out "$demo/data" --classes 4 --per-class 100 \
  --val-per-class 25 --size 48x48 --seed 7

echo "== starting vggtuned (log: $demo/vggtuned.log)"
"$vggtuned" --config none --socket "$sock" --state-dir "$demo/state" >"$demo/vggtuned.log" 2>&1 &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
# The socket answers before the device is up (status then says "starting");
# wait for the daemon's "ready": true, which it sets once the device is.
daemon_ready() {
  local reply
  reply=$("$vggtune" --socket "$sock" --json status 2>/dev/null) || return 1
  python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1])["daemon"].get("ready") is True else 1)' "$reply"
}
deadline=$((SECONDS + 120))
until daemon_ready; do
  kill -0 $daemon 2>/dev/null ||
    { echo "demo: vggtuned exited while starting; its log:"; cat "$demo/vggtuned.log"; exit 1; }
  ((SECONDS < deadline)) ||
    { echo "demo: vggtuned's device was not ready after 120 s; its log:"
      cat "$demo/vggtuned.log"; exit 1; }
  sleep 0.2
done
"$vggtune" --socket "$sock" status

echo "== submitting a finetune job (block 5 + head, 32x32 images) and watching it"
"$vggtune" --socket "$sock" submit --name demo --mode finetune \
  --data "$demo/data/train" --val "$demo/data/val" --image-size 32 \
  --epochs 6 --batch-size 16 --out "$demo/out" --watch

echo "== the job"
"$vggtune" --socket "$sock" status 1

echo "== predictions for a few validation images"
"$vggtune" --socket "$sock" predict 1 --top 2 \
  "$demo"/data/val/*/img00000.jpg

acc=$("$vggtune" --socket "$sock" --json status 1 |
      python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["job"]["metrics"][-1]["val_accuracy"])')
echo "== final validation accuracy: $acc (the demo passes at 0.90 or more; outputs in $demo/out)"
echo "   (a random trunk on generated shapes of distinct colours: an easy task, a smoke test"
echo "    of the whole path; README.md 'Using real VGG16 weights' for real ones)"
python3 -c "import sys; sys.exit(0 if float('$acc') >= 0.90 else 1)" ||
  { echo "demo: validation accuracy $acc is below 0.90"; exit 1; }

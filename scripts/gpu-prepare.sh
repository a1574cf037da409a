#!/usr/bin/env bash
# Prepares the one-shot GPU check, on a build machine (no GPU needed).
#
#   scripts/gpu-prepare.sh [BUILD_DIR]          (default: build-gpu)
#
# 1. Configures and builds BUILD_DIR with the CUDA backend on: Release,
#    code for Hopper (sm_90, plus compute_90 PTX).
# 2. Collects what the GPU machine needs into BUILD_DIR/run (ignored by git,
#    small enough to travel with the device tool's `carry`):
#      bin/       vt-bench; vt-decodebench, vggtuned, vggtune, vt-gendata
#                 for the decode and job stages (their scripts,
#                 scripts/bench-*.sh and bench/torch_decode_ref.py, travel
#                 with the working tree like gpu-check.sh itself)
#      tests/     every test executable (the GPU tests and their helpers)
#      devlibs.tar.gz  the shared libraries the GPU machine may lack
#                 (../shared/device/bundle-libs.sh; never the CUDA libraries),
#                 compressed to fit; gpu-check.sh unpacks them
#      anchors/   the PyTorch reference scripts (from ../shared/anchors,
#                 or ANCHORS_SRC), which do not travel by themselves
#      gpu-tests.txt  the tests `ctest -L gpu` would run: name|binary|args|timeout
#      BUILDINFO  commit, date, compiler
# 3. Prints the device tool call that runs scripts/gpu-check.sh there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-gpu}
case "$build" in /*) ;; *) build=$here/$build ;; esac
run=$build/run
shared=${SHARED_DIR:-$here/../shared}
anchors_src=${ANCHORS_SRC:-$shared/anchors}
bundler=$shared/device/bundle-libs.sh

[ -x "$bundler" ] || { echo "gpu-prepare: $bundler not found (set SHARED_DIR)" >&2; exit 1; }
[ -d "$anchors_src" ] || { echo "gpu-prepare: anchors not found in $anchors_src (set ANCHORS_SRC)" >&2; exit 1; }

echo "== configure $build (CUDA on, Release, sm_90)"
cmake -S "$here" -B "$build" -DVT_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_BUILD_TYPE=Release -DVT_SANITIZE= >/dev/null

# The gpu-labelled tests, as ctest would run them, rewritten to the bundle:
# name|binary|args|timeout, the binary empty while none has been built
# (ctest names a test's binary only once it exists).
list_gpu_tests() {
  (cd "$build" && ctest -L gpu --show-only=json-v1) | python3 -c '
import json, os, sys
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or [""]
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    print("|".join([t["name"], os.path.basename(cmd[0]), " ".join(cmd[1:]),
                     str(int(float(props.get("TIMEOUT", 600))))]))
'
}

echo "== build"
# Everything if it builds; at least what travels otherwise (every binary,
# so that none is a stale one from an earlier build; a GPU test whose
# binary was never built is found below).
if ! cmake --build "$build" -j "$(nproc)" >"$build/build.log" 2>&1; then
  echo "gpu-prepare: a full build failed (see $build/build.log); building the check's targets"
  # shellcheck disable=SC2046
  cmake --build "$build" -j "$(nproc)" --target vt-bench vt-decodebench vggtuned vggtune \
        vt-gendata $(list_gpu_tests | cut -d'|' -f2 | sort -u)
fi

tests_txt=$build/gpu-tests.txt
list_gpu_tests >"$tests_txt"
[ -s "$tests_txt" ] || { echo "gpu-prepare: ctest lists no gpu-labelled test" >&2; exit 1; }
unbuilt=$(awk -F'|' '$2 == "" { printf " %s", $1 }' "$tests_txt")
[ -z "$unbuilt" ] || { echo "gpu-prepare: these tests' binaries were not built:$unbuilt" >&2; exit 1; }
test_bins=$(cut -d'|' -f2 "$tests_txt" | sort -u)

echo "== collect $run"
rm -rf "$run"
mkdir -p "$run/bin" "$run/tests" "$run/anchors"
cp "$build/bench/vt-bench" "$build/bench/vt-decodebench" "$build/daemon/vggtuned" \
   "$build/client/vggtune" "$build/tools/vt-gendata" "$run/bin/"
cp "$tests_txt" "$run/gpu-tests.txt"
# Only those tests' binaries travel (each links the whole engine: all of
# them together would not fit the device tool's 64 MiB).
for bin in $test_bins; do
  cp "$build/tests/$bin" "$run/tests/"
done
strip -g "$run"/bin/* "$run"/tests/* 2>/dev/null || true
cp "$anchors_src"/*.py "$run/anchors/"
"$bundler" "$run/devlibs" "$run"/bin/* "$run"/tests/* >/dev/null
# compressed: OpenBLAS alone is 36 MiB; gpu-check.sh unpacks it
tar -C "$run" -czf "$run/devlibs.tar.gz" devlibs
rm -rf "$run/devlibs"

{
  echo "commit: $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$here" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "nvcc: $(nvcc --version | tail -1)"
  echo "cudnn headers: $(awk '/define CUDNN_(MAJOR|MINOR|PATCHLEVEL) /{printf "%s.", $3}' /usr/local/cuda/include/cudnn_version.h 2>/dev/null | sed 's/\.$//')"
} >"$run/BUILDINFO"

size=$(du -sm "$run" | cut -f1)
# What travels with it: the working tree's tracked and untracked, not ignored files.
tree=$(( ($(cd "$here" && git ls-files -z -co --exclude-standard | xargs -0 cat 2>/dev/null | wc -c) + 1048575) / 1048576 ))
echo "gpu-tests.txt:"; sed 's/^/  /' "$run/gpu-tests.txt"
echo "bundle: $size MiB in $run, plus $tree MiB of working tree"
if [ $(( size + tree )) -gt 60 ]; then
  echo "gpu-prepare: bundle and working tree are over 60 MiB; the device tool carries 64 MiB at most" >&2
  exit 1
fi
rel=${run#"$here"/}
cat <<EOF

== device tool call (one run): each stage of the check starts only while
   BUDGET_S lasts and is cut at its end, so the check ends by about
   BUDGET_S + 10 s (the last stage's kill grace, the summary):
run(command="BUDGET_S=480 bash scripts/gpu-check.sh $rel", carry=["$rel"], timeout_s=540)
   (kind: leave it out, or nvidia-h100-x1 / nvidia-h200; the table names the card)
Three files come back under the reply's files_at: summary.md, summary.json
and logs.tar.gz (bench.jsonl, torch.jsonl, decode.jsonl, job.jsonl,
e2e.jsonl, every log).  Rehearse it here first: tests/gpucheck/rehearse.sh.
EOF

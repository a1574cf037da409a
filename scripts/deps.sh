#!/usr/bin/env bash
# Installs the Debian packages vggtune needs that are missing, and says which.
#   scripts/deps.sh build   compilers and libraries (make demo)
#   scripts/deps.sh test    also what the test suite uses: CPU PyTorch, numpy,
#                           h5py and safetensors as independent references,
#                           systemd tools, useradd/setpriv
# Used by `make demo`, `make test` and .ci/run.  Needs root or sudo only when
# something is missing.
set -euo pipefail
profile=${1:-build}

build_pkgs=(build-essential cmake pkg-config libuv1-dev libcjson-dev
  libjpeg-dev libturbojpeg0-dev libpng-dev libopenblas-dev libhdf5-dev libsqlite3-dev
  libsystemd-dev)
test_pkgs=(python3 python3-numpy python3-torch python3-torchvision python3-h5py python3-pil
  python3-pip systemd util-linux passwd procps)

pkgs=("${build_pkgs[@]}")
[ "$profile" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: all ${#pkgs[@]} Debian packages for '$profile' are present"
fi

if [ "$profile" = test ]; then
  # Debian packages no safetensors module; the tests use it as an
  # independent reader and writer of the format.
  if ! /usr/bin/python3 -c 'import safetensors.torch' 2>/dev/null; then
    echo "deps: installing the Python package safetensors (pip, system Python)"
    "${sudo[@]}" /usr/bin/python3 -m pip install -q --break-system-packages safetensors
  fi
fi

#!/usr/bin/env bash
# Installs what ringreduce needs to build and run, when it is missing.
# Idempotent: a machine that has everything is left untouched.
#   - OpenMPI (runtime + headers): openmpi-bin libopenmpi-dev
#   - libclang-dev (rsmpi's bindings are generated with bindgen), pkg-config
#   - fonts-dejavu-core (the font of the PNG/SVG charts)
#   - dataset-fashion-mnist (the default training data, /usr/share/datasets/fashion-mnist)
#   - iproute2 (ip, tc: the network-namespace cluster of scripts/cluster.sh)
#   - python3-venv (scripts/test.sh fetches safetensors for the checkpoint interop test)
# `scripts/setup.sh mpich` adds Debian's MPICH (mpich libmpich-dev) beside
# Open MPI, which stays the default `mpirun` (scripts/mpich.sh).
set -euo pipefail

packages=(openmpi-bin libopenmpi-dev libclang-dev pkg-config fonts-dejavu-core dataset-fashion-mnist iproute2 python3-venv)
if [ "${1:-}" = mpich ]; then
  packages+=(mpich libmpich-dev)
fi

missing=()
for pkg in "${packages[@]}"; do
  if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  if [ "$(id -u)" -eq 0 ]; then
    apt_get=(apt-get)
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    apt_get=(sudo apt-get)
  else
    echo "setup: missing packages and no root or sudo; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${apt_get[@]}" update -qq
  "${apt_get[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo mpirun; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool not found on PATH after setup" >&2; exit 1; }
done

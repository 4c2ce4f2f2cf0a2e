#!/usr/bin/env bash
# Makes sure what ringreduce needs to build and run is here; installs what
# is missing with apt on Debian/Ubuntu (as root, or with passwordless sudo).
# It looks for each thing itself, not for packages, so a machine set up by
# other means (another distribution, `module load openmpi`, a container with
# MPI preinstalled) passes untouched:
#   needed:   cargo; an MPI with mpirun and its compiler wrapper or
#             pkg-config file (Debian: openmpi-bin libopenmpi-dev); libclang
#             (rsmpi's bindings are generated with bindgen; libclang-dev)
#   optional: Fashion-MNIST in /usr/share/datasets/fashion-mnist (scripts/run.sh;
#             dataset-fashion-mnist), ip and tc (the namespace cluster of
#             scripts/cluster.sh; iproute2), Python's venv (the checkpoint
#             interop test fetches safetensors; python3-venv)
# `scripts/setup.sh mpich` also wants Debian's MPICH beside Open MPI
# (mpich libmpich-dev; scripts/mpich.sh).
# RINGREDUCE_SKIP_SETUP=1 skips every check and install.
#   scripts/setup.sh [mpich] [-h]
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "" | mpich) ;;
  *) echo "setup.sh: unknown argument $1 (mpich or -h)" >&2; exit 2 ;;
esac
if [ "${RINGREDUCE_SKIP_SETUP:-0}" = 1 ]; then
  exit 0
fi

has() { command -v "$1" >/dev/null 2>&1; }
have_mpi() { has mpirun && { has mpicc || pkg-config --exists ompi 2>/dev/null || pkg-config --exists mpich 2>/dev/null; }; }
have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0
  # libclang.so or libclang-14.so.1, not libclang-cpp (another library,
  # which other packages pull in without libclang).
  ldconfig -p 2>/dev/null | grep -Eq '^\s*libclang(-[0-9.]+)?\.so' && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null ||
    compgen -G '/usr/lib*/libclang.so*' >/dev/null || compgen -G '/usr/lib*/libclang-[0-9]*.so*' >/dev/null
}
have_mpich() { has mpirun.mpich && pkg-config --exists mpich 2>/dev/null; }

# what is missing: "package|what it is for|needed or optional"
missing=()
have_mpi || missing+=("openmpi-bin libopenmpi-dev|MPI (mpirun, headers)|needed")
have_libclang || missing+=("libclang-dev|libclang (rsmpi's bindgen)|needed")
has pkg-config || missing+=("pkg-config|pkg-config (finding MPI)|needed")
[ -d /usr/share/datasets/fashion-mnist ] || missing+=("dataset-fashion-mnist|Fashion-MNIST (scripts/run.sh)|optional")
# ip and tc live in sbin, which a user's PATH may leave out.
has_sbin() { has "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
{ has_sbin ip && has_sbin tc; } || missing+=("iproute2|ip and tc (scripts/cluster.sh, needs root)|optional")
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3-venv|Python venv (the checkpoint interop test)|optional")
if [ "${1:-}" = mpich ]; then
  have_mpich || missing+=("mpich libmpich-dev|MPICH beside Open MPI (scripts/mpich.sh)|needed")
fi

if ((${#missing[@]})); then
  packages=()
  for m in "${missing[@]}"; do
    IFS='|' read -r pkg _ _ <<<"$m"
    read -ra parts <<<"$pkg"
    packages+=("${parts[@]}")
  done
  apt_get=()
  if has apt-get; then
    if [ "$(id -u)" -eq 0 ]; then
      apt_get=(apt-get)
    elif has sudo && sudo -n true 2>/dev/null; then
      apt_get=(sudo apt-get)
    fi
  fi
  if ((${#apt_get[@]})); then
    echo "setup: installing ${packages[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${apt_get[@]}" update -qq
    "${apt_get[@]}" install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  else
    fatal=0
    for m in "${missing[@]}"; do
      IFS='|' read -r pkg what level <<<"$m"
      echo "setup: $level, not found: $what (Debian package: $pkg)" >&2
      [ "$level" = needed ] && fatal=1
    done
    echo "setup: no apt-get with root or sudo here: install them with your package manager or module system," >&2
    echo "       or set RINGREDUCE_SKIP_SETUP=1 if they are there in a form this script does not see" >&2
    [ "$fatal" = 1 ] && exit 1
  fi
fi

for tool in cargo mpirun; do
  has "$tool" || { echo "setup: $tool not found on PATH" >&2; exit 1; }
done

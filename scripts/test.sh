#!/usr/bin/env bash
# The test command: formatting, lints, and every test (mpirun tests
# included) against Open MPI, then the MPICH leg (scripts/mpich.sh).
# RINGREDUCE_MPI=openmpi runs the first part only, RINGREDUCE_MPI=mpich the
# second only.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

case "${RINGREDUCE_MPI:-both}" in
  both | openmpi) ;;
  mpich) exec scripts/mpich.sh ;;
  *) echo "test.sh: RINGREDUCE_MPI must be openmpi, mpich or unset (both), not ${RINGREDUCE_MPI}" >&2; exit 2 ;;
esac

scripts/setup.sh
source scripts/mpienv.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
# The algorithm and strategy files are modules declared by registry
# macros, which rustfmt does not follow: check them by name.
rustfmt --edition 2021 --check src/algorithms/*.rs src/train/strategies/*.rs
echo "== cargo clippy --all-targets -- -D warnings (default features, then the core alone, then core + train)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --all-targets --quiet --no-default-features -- -D warnings
cargo clippy --lib --quiet --no-default-features --features train -- -D warnings
# tests/interop.rs loads a checkpoint in Python with safetensors.numpy:
# when the system Python lacks it, a virtual environment gets it from PyPI.
if ! python3 -c 'import safetensors.numpy, numpy' 2>/dev/null; then
  if ! target/pyenv/bin/python -c 'import safetensors.numpy, numpy' 2>/dev/null; then
    echo "== installing safetensors and numpy (PyPI) into target/pyenv"
    python3 -m venv target/pyenv
    target/pyenv/bin/pip install --quiet --disable-pip-version-check safetensors numpy
  fi
  export RINGREDUCE_PYTHON="$PWD/target/pyenv/bin/python"
fi
echo "== cargo test"
cargo test
if [ "${RINGREDUCE_MPI:-both}" = both ]; then
  scripts/mpich.sh
fi

#!/usr/bin/env bash
# The main job: build, check every algorithm against MPI_Allreduce on 4 ranks,
# then run the ring all-reduce example.
#   RANKS=8 scripts/run.sh      # another rank count
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
source scripts/mpienv.sh
ranks="${RANKS:-4}"

echo "== building (release)"
cargo build --release --quiet --bins --examples

echo "== mpirun -n $ranks ringreduce verify"
mpirun -n "$ranks" target/release/ringreduce verify

echo "== mpirun -n $ranks examples/allreduce"
mpirun -n "$ranks" target/release/examples/allreduce

#!/usr/bin/env bash
# 2 ranks bound to cores: shm, the butterfly (over Open MPI's shared memory,
# which reads a peer's buffer in place above 4 KiB) and the vendor, each timed
# out of place (the same input every call) and in place (every call's input
# is the last call's result, just written by its own rank — as a gradient is).
# R runs, subjects rotated.   run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/perf/shm-fresh-input
runs=${1:-5}
source scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
orders=("shm,butterfly,mpi" "butterfly,mpi,shm" "mpi,shm,butterfly")
for r in $(seq "$runs"); do
  mpirun -n 2 --bind-to core target/release/ringreduce bench --algo "${orders[$(((r - 1) % 3))]}" \
    -m 4K:1M --format csv > "$here/run$r.csv"
done
python3 "$here/ratios.py" | tee "$here/summary.txt"

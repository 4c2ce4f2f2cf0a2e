#!/bin/bash
# Old (before: c26382a) and new ringreduce side by side, 2 ranks bound to
# cores, runs interleaved and the subjects' order rotated by run.
#   OLD=/path/to/old/ringreduce NEW=/path/to/new/ringreduce bash run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")"
source ../../../scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
runs=${1:-5}
subjects=(auto auto-nocheck mpi)
for run in $(seq "$runs"); do
  s=$(( (run - 1) % 3 )); order=("${subjects[@]:s}" "${subjects[@]:0:s}")
  algos=$(IFS=,; echo "${order[*]}")
  pair=(old new); [ $((run % 2)) = 0 ] && pair=(new old)
  for which in "${pair[@]}"; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    mpirun -n 2 --bind-to core "$bin" bench --algo "$algos" -m 4:16M --format csv > "$which-$run.csv"
  done
done

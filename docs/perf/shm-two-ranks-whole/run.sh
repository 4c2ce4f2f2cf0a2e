#!/usr/bin/env bash
# Old (two-phase pieces at 2 ranks) and new (each rank reduces the whole
# piece) shm binaries interleaved, R runs each, subjects rotated; then
# ratios.py. OLD=path/to/old/ringreduce NEW=target/release/ringreduce.
set -euo pipefail
here=docs/perf/shm-two-ranks-whole
runs=${1:-5}
source scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
orders=("shm,memcpy,mpi" "memcpy,mpi,shm" "mpi,shm,memcpy")
for r in $(seq "$runs"); do
  o=${orders[$(((r - 1) % 3))]}
  mpirun -n 2 --bind-to core "$OLD" bench --algo "$o" -m 4K:16M --no-in-place --format csv > "$here/old-$r.csv"
  mpirun -n 2 --bind-to core "$NEW" bench --algo "$o,peer-copy" -m 4K:16M --no-in-place --format csv > "$here/new-$r.csv"
done
python3 "$here/ratios.py"
cat "$here/summary.txt"

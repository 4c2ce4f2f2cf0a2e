#!/usr/bin/env bash
# Interleaves, R times: the cross-core copy measurement (xcopy.c) and the
# 2-rank shm all-reduce beside bench's memcpy roofline (subjects rotated);
# then ratios.py. Run from the repository root after `cargo build --release`:
#   docs/perf/cross-core-copy/run.sh [R]
set -euo pipefail
here=docs/perf/cross-core-copy
runs=${1:-3}
gcc -O2 -Wall "$here/xcopy.c" -o /tmp/xcopy
source scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
orders=("shm,memcpy,auto" "memcpy,auto,shm" "auto,shm,memcpy")
for r in $(seq "$runs"); do
  /tmp/xcopy > "$here/xcopy-$r.txt"
  mpirun -n 2 --bind-to core target/release/ringreduce bench --algo "${orders[$(((r - 1) % 3))]}" \
    -m 64K:16M --no-in-place --format csv > "$here/bench-$r.csv"
done
python3 "$here/ratios.py" > "$here/summary.txt"
cat "$here/summary.txt"

#!/usr/bin/env bash
# Waits that nap when Open MPI is told to yield (NEW) against waits that spin
# for 1 ms first (OLD), on a running 4-host namespace cluster (4 ranks, 2 cores):
# calibrate's timed pair (the other two ranks wait in a barrier) and bench at
# 8 B-64 KiB, the two binaries in turn, R runs.
#   OLD=path NEW=path run.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/perf/yield-naps-4x1
runs=${1:-3}
for r in $(seq "$runs"); do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    scripts/cluster.sh run -n 4 -- "$bin" calibrate --max-bytes 64K > "$here/cal-$b-$r.txt"
    scripts/cluster.sh run -n 4 -- "$bin" bench --algo butterfly,butterfly-nocheck,mpi -m 8:64K \
      --no-in-place --iters 200 --warmup 20 --format csv > "$here/bench-$b-$r.csv"
  done
done

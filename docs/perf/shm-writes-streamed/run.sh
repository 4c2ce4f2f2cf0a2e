#!/usr/bin/env bash
# The shm all-reduce with its pieces written through the cache (the
# default), around it (RINGREDUCE_SHM_WRITES=streamed), and by the build
# before the setting (OLD), interleaved R times at 2 ranks bound to cores;
# peer-copy and memcpy in the same runs tell the state of the cores.
#   OLD=path/to/old/ringreduce docs/perf/shm-writes-streamed/run.sh OUTDIR [R]
set -euo pipefail
out=$1
runs=${2:-8}
mkdir -p "$out"
source scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
for r in $(seq "$runs"); do
  for m in auto cached streamed old; do
    if [ "$m" = old ]; then
      mpirun -n 2 --bind-to core "$OLD" bench --algo shm,memcpy,mpi -m 4K:16M --no-in-place --format csv > "$out/$m-$r.csv"
    else
      mpirun -n 2 --bind-to core -x RINGREDUCE_SHM_WRITES=$m target/release/ringreduce bench \
        --algo shm,memcpy,peer-copy,mpi -m 4K:16M --no-in-place --format csv > "$out/$m-$r.csv"
    fi
  done
done

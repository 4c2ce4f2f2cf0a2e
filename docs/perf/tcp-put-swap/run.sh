#!/usr/bin/env bash
# Open MPI's TCP BTL with and without its emulated RDMA `put` (btl_tcp_flags),
# the two builds of the same binary's job in turn, R runs each, on a running
# namespace cluster (scripts/cluster.sh up N --rate 1gbit). Writes
# <tag>-<flags>-<run>.csv here.   run.sh TAG RANKS [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
tag=$1 ranks=$2 runs=${3:-3}
here=docs/perf/tcp-put-swap
for r in $(seq "$runs"); do
  for f in default noput; do
    # Open MPI 4.1's default spelled out: the ringreduce binary turns the put
    # off itself when the variable is unset (transport::MPI_DEFAULTS).
    if [ $f = noput ]; then export OMPI_MCA_btl_tcp_flags=send,inplace,need-ack,need-csum
    else export OMPI_MCA_btl_tcp_flags=send,put,inplace,need-ack,need-csum,hetero-rdma; fi
    scripts/cluster.sh run -n "$ranks" -- target/release/ringreduce bench \
      --algo ring,butterfly,rabenseifner,mpi -m 16K:16M --no-in-place -n 5 -w 1 --format csv > "$here/$tag-$f-$r.csv"
    scripts/cluster.sh run -n "$ranks" -- target/release/ringreduce bench --collective reduce \
      --algo mpi -m 256K:16M --no-in-place -n 5 -w 1 --format csv | tail -n +2 >> "$here/$tag-$f-$r.csv"
  done
done

#!/usr/bin/env bash
# hierarchical's piece size across hosts: 2 hosts x 2 ranks at 1 Gbit/s
# (scripts/cluster.sh), the piece swept, Rabenseifner and the vendor timed
# in the same job as references. Rounds interleave the pieces.
#   docs/perf/hier-piece-2x2gbit/run.sh ROUNDS [PIECES...]
# RATE=10gbit OUT=DIR: another link rate, files to DIR. VAR: the variable
# set (RINGREDUCE_SHM_PIECE, which set hierarchical's piece before
# RINGREDUCE_HIER_PIECE existed; now RINGREDUCE_HIER_PIECE).
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=${OUT:-docs/perf/hier-piece-2x2gbit}
rate=${RATE:-1gbit}
var=${VAR:-RINGREDUCE_HIER_PIECE}
mkdir -p "$out"
rounds=${1:-3}; shift || true
pieces=("${@:-512K 1M 2M 4M 8M}")
read -r -a pieces <<< "${pieces[*]}"
source scripts/mpienv.sh
scripts/cluster.sh up 2 --rate "$rate" --slots 2 > "$out/cluster.txt" 2>&1
trap 'scripts/cluster.sh down > /dev/null' EXIT
for round in $(seq "$rounds"); do
  for pc in "${pieces[@]}"; do
    env "$var=$pc" scripts/cluster.sh run -n 4 -- target/release/ringreduce bench \
      --algo hierarchical,rabenseifner,mpi -m 1M:16M --no-in-place -n 10 -w 3 --format csv \
      > "$out/round$round-$pc.csv"
  done
done

#!/usr/bin/env bash
# The candle LeNet at 1 rank, 2 ranks and 2 ranks with 0.05 MiB buckets,
# bound to the 2 cores: 5 interleaved runs of one epoch over the first
# 16384 training examples (256 steps of global batch 64), then medians.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/mpienv.sh
out=docs/perf/lenet-candle
# The build these figures came from: the dev profile at opt-level 2.
CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo build --quiet -p ringreduce-adapters --features candle --example lenet
bin=target/debug/examples/lenet
args=(--epochs 1 --train-limit 16384 --test-limit 2000)
for i in 1 2 3 4 5; do
  mpirun -n 1 --bind-to core "$bin" "${args[@]}" > "$out/n1-$i.txt"
  mpirun -n 2 --bind-to core "$bin" "${args[@]}" > "$out/n2-$i.txt"
  mpirun -n 2 --bind-to core "$bin" "${args[@]}" --buckets 0.05 > "$out/n2-buckets-$i.txt"
done
python3 "$out/medians.py" "$out" | tee "$out/summary.txt"
# Then 4 hosts at 1 Gbit/s (root; one rank per network namespace, the 2
# cores shared by the 4 ranks):
#   scripts/cluster.sh up 4 --rate 1gbit
#   for i in 1 2 3 4 5; do
#     scripts/cluster.sh run -- "$bin" "${args[@]}" > "$out/h4-$i.txt"
#     scripts/cluster.sh run -- "$bin" "${args[@]}" --buckets 0.05 > "$out/h4-buckets-$i.txt"
#   done
#   scripts/cluster.sh down; python3 "$out/medians.py" "$out" > "$out/summary.txt"

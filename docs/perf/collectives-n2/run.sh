#!/usr/bin/env bash
# Ours against the vendor's reduce_scatter / reduce / all_gather at 2 ranks
# bound to the 2 cores: 5 interleaved runs of each, CSV per run.
set -euo pipefail
cd "$(dirname "$0")/../../.."
source scripts/mpienv.sh
out=docs/perf/collectives-n2
for i in 1 2 3 4 5; do
  for c in reduce_scatter reduce all_gather; do
    mpirun -n 2 --bind-to core target/release/ringreduce bench --collective "$c" \
      -b 64 -e 16M -f 16 --format csv > "$out/$c-$i.csv"
  done
done
python3 "$out/medians.py" "$out" | tee "$out/summary.txt"

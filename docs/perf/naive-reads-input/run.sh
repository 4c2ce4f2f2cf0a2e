#!/usr/bin/env bash
# naive out of place, before (its input copied into the output, which is
# sent and then written) and after (the input sent and folded where it is):
# 2 ranks bound to cores, OLD and NEW binaries interleaved R rounds.
#   docs/perf/naive-reads-input/run.sh OLD_BINARY NEW_BINARY [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
old=$1 new=$2 rounds=${3:-5}
out=docs/perf/naive-reads-input
source scripts/mpienv.sh
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=$old; [ "$which" = new ] && bin=$new
    mpirun -n 2 --bind-to core "$bin" bench --algo naive,butterfly -m 4K:16M -f 4 --format csv \
      > "$out/round$round-$which.csv"
  done
done

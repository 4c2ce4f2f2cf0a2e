#!/usr/bin/env bash
# Soak: many all-reduces of random algorithm, element type, op and size in
# a row under mpirun, every result checked; reports failures (must be 0) and
# resident memory after the warm-up and at the end (must not grow).
#
#   scripts/soak.sh [-n RANKS] [--calls N] [--max-bytes 1M] [--seed S]
# Output also goes to results/soak-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

ranks=4
calls=10000
args=()
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    --calls) calls="$2"; shift 2 ;;
    --max-bytes|--seed|--warmup) args+=("$1" "$2"); shift 2 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

build_release
mkdir -p results
out="results/soak-$(date -u +%Y%m%d-%H%M%S).txt"
echo "== mpirun -n $ranks ringreduce soak --check --calls $calls ${args[*]:-} (log: $out)"
start=$(date +%s)
set +e
mpirun -n "$ranks" "$bin" soak --check --calls "$calls" "${args[@]}" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
echo "== soak finished in $(( $(date +%s) - start )) s with exit status $status" | tee -a "$out"
exit "$status"

#!/usr/bin/env bash
# Holds the cost model to measurement: calibrates α, β, γ and then times
# every algorithm in the same mpirun job (so both see one memory placement),
# and prints predicted vs measured time per algorithm and size, the worst
# ratio at sizes >= 64 KiB, and how close `auto` came to the fastest.
#   scripts/cost_check.sh [-n RANKS] [-m MIN:MAX] [--iters N]
set -euo pipefail
cd "$(dirname "$0")/.."

ranks=2
sizes=4:16M
iters=()
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -m) sizes="$2"; shift 2 ;;
    --iters) iters=(--iters "$2"); shift 2 ;;
    *) echo "cost_check.sh: unknown argument $1 (use -n RANKS, -m MIN:MAX, --iters N)" >&2; exit 2 ;;
  esac
done

scripts/setup.sh
source scripts/mpienv.sh
cargo build --release --quiet --bins

out=$(mktemp)
trap 'rm -f "$out"' EXIT
mpirun -n "$ranks" target/release/ringreduce bench --calibrate --predict --format csv \
  -m "$sizes" --algo naive,butterfly,ring,central,auto,mpi "${iters[@]}" > "$out"

awk -F, -v ranks="$ranks" '
  NR == 1 { next }
  {
    bytes = $1; algo = $4; t = $5; pred = $11
    if (algo == "mpi") next
    if (algo ~ /^auto/) { auto[bytes] = t; autoname[bytes] = algo; next }
    if (!(bytes in best) || t < best[bytes]) { best[bytes] = t; bestname[bytes] = algo }
    ratio = t / pred
    printf "%10d %-10s measured %12.2f us  predicted %12.2f us  ratio %5.2f\n", bytes, algo, t, pred, ratio
    if (bytes >= 65536) {
      dev = ratio > 1 ? ratio - 1 : 1 - ratio
      if (!(algo in worst) || dev > worst[algo]) { worst[algo] = dev; worstat[algo] = bytes; worstr[algo] = ratio }
      n++; if (dev <= 0.25) ok++
    }
    sizes[bytes] = 1
  }
  END {
    print ""
    printf "# -n %d: measured/predicted within ±25%% for %d of %d (algorithm, size) pairs at >= 64 KiB\n", ranks, ok, n
    for (a in worst) printf "#   %-10s worst ratio %.2f at %d B\n", a, worstr[a], worstat[a]
    within = 0; total = 0
    for (b in auto) {
      total++; r = auto[b] / best[b]
      if (r <= 1.10) within++
      else printf "#   auto (%s) at %d B: %.2fx the fastest (%s)\n", autoname[b], b, r, bestname[b]
    }
    printf "# auto within 10%% of the fastest measured algorithm at %d of %d sizes\n", within, total
  }' "$out"

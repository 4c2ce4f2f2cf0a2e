#!/usr/bin/env bash
# Holds the cost model to measurement: calibrates α, β, γ and then times
# every algorithm in the same mpirun job (so both see one memory placement),
# and prints predicted vs measured time per algorithm and size, the worst
# ratio at sizes >= 64 KiB, and how close `auto` came to the fastest.
# The machine is shared and noisy, so the job runs --repeats times (default 3)
# and every figure is the median over runs.
# The tally at >= 64 KiB is given for every algorithm and for the four of the
# seeds (naive, butterfly, ring, central: 4 x 9 sizes = 36 pairs).
# --in-place holds the model to the in-place call instead (what a training
# step makes; the model without the copy of the input an out-of-place call
# adds), timed in the same jobs as the out-of-place one.
#   scripts/cost_check.sh [-n RANKS] [-m MIN:MAX] [--iters N] [-r|--repeats N] [--in-place]
#   scripts/cost_check.sh --cluster 4 --rate 1gbit [...]   on a namespace cluster (root;
#                         one rank per host, calibrated between hosts over TCP)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

ranks=2
runs=3
sizes=4:16M
iters=()
cluster=""
rate=""
# Which call: the out-of-place one (bench's time and prediction columns 5
# and 11) or the in-place one (12 and 22).
call="out of place"
placement=(--no-in-place)
columns=(5 11)
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -m) sizes="$2"; shift 2 ;;
    --iters) iters=(--iters "$2"); shift 2 ;;
    -r|--repeats) runs="$2"; shift 2 ;;
    --cluster) cluster="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --in-place) call="in place"; placement=(); columns=(12 22); shift ;;
    *) echo "cost_check.sh: unknown argument $1 (use -n RANKS, -m MIN:MAX, --iters N, -r/--repeats N, --in-place, --cluster HOSTS, --rate R)" >&2; exit 2 ;;
  esac
done

build_release
# One rank per core, busy-polling, or one rank per namespace host.
# shellcheck source=scripts/launch.sh
source scripts/launch.sh
echo "# $setting" >&2
# The message-based algorithms (shm moves no message the model prices), and mpi.
algos=$(algorithms | grep -vx shm | paste -sd,)

out=$(mktemp)
# One EXIT trap for both: launch.sh's brings the cluster down.
trap 'rm -f "$out" "$out".*; if [ -n "$cluster" ]; then scripts/cluster.sh down >/dev/null; fi' EXIT
for run in $(seq "$runs"); do
  echo "# run $run of $runs" >&2
  "${launch[@]}" "$bin" bench --calibrate --predict --format csv \
    -m "$sizes" --algo "$algos" "${placement[@]}" "${iters[@]}" | tail -n +2 > "$out.$run"
done

# Median over runs of the measured and predicted times per (size, algorithm);
# auto is keyed by "auto" whatever it chose, and reported with its choice.
awk -F, -v tc="${columns[0]}" -v pc="${columns[1]}" '
  { key = $1 FS ($4 ~ /^auto/ ? "auto" : $4); t[key] = t[key] " " $tc; p[key] = p[key] " " $pc; name[key] = $4; order[key] = $1 }
  function median(list,   v, n, i, j, x) {
    n = split(list, v, " ")
    for (i = 2; i <= n; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > x + 0; j--) v[j + 1] = v[j]; v[j + 1] = x }
    return v[int((n + 1) / 2)]
  }
  END { for (k in t) { split(k, f, FS); printf "%s,%s,%s,%s\n", f[1], name[k], median(t[k]), median(p[k]) } }
' "$out".* | sort -t, -k1,1n > "$out"

awk -F, -v ranks="$ranks" -v runs="$runs" -v call="$call" '
  {
    bytes = $1; algo = $2; t = $3; pred = $4
    if (algo == "mpi") next
    if (algo ~ /^auto/) { auto[bytes] = t; autoname[bytes] = algo; next }
    if (!(bytes in best) || t < best[bytes]) { best[bytes] = t; bestname[bytes] = algo }
    ratio = t / pred
    printf "%10d %-10s measured %12.2f us  predicted %12.2f us  ratio %5.2f\n", bytes, algo, t, pred, ratio
    if (bytes >= 65536) {
      dev = ratio > 1 ? ratio - 1 : 1 - ratio
      if (!(algo in worst) || dev > worst[algo]) { worst[algo] = dev; worstat[algo] = bytes; worstr[algo] = ratio }
      n++; if (dev <= 0.25) ok++
      if (algo ~ /^(naive|butterfly|ring|central)$/) { n4++; if (dev <= 0.25) ok4++ }
    }
    sizes[bytes] = 1
  }
  END {
    print ""
    printf "# -n %d, %s, median of %d runs: measured/predicted within ±25%% for %d of %d (algorithm, size) pairs at >= 64 KiB\n", ranks, call, runs, ok, n
    printf "#   of them the four of the seeds (naive, butterfly, ring, central): %d of %d\n", ok4, n4
    for (a in worst) printf "#   %-10s worst ratio %.2f at %d B\n", a, worstr[a], worstat[a]
    within = 0; total = 0
    for (b in auto) {
      total++; r = auto[b] / best[b]
      if (r <= 1.10) within++
      else printf "#   auto (%s) at %d B: %.2fx the fastest (%s)\n", autoname[b], b, r, bestname[b]
    }
    printf "# auto within 10%% of the fastest measured algorithm at %d of %d sizes\n", within, total
  }' "$out"

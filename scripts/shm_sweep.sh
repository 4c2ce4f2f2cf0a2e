#!/usr/bin/env bash
# The shared-memory all-reduce's segment shape, swept: the same 2-rank
# benchmark of `shm` beside `memcpy` and the vendor's MPI_Allreduce with
# each piece size (RINGREDUCE_SHM_PIECE) or slot size (RINGREDUCE_SHM_SLOT),
# the shapes in a rotated order each repeat; per size and shape the median
# shm time and the median of the paired shm / memcpy and shm / vendor
# ratios. Results go to results/shm-sweep-<what>-<date>/.
#
#   scripts/shm_sweep.sh --piece "64K 128K 256K 512K 1M 2M" [-m 64K:16M] [-r 3] [-n 2]
#   scripts/shm_sweep.sh --slot "1K 2K 4K 8K 16K" [-m 8:32K] [-r 3]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

args="$*"
what=""
values=""
sizes=""
runs=3
ranks=2
while (($#)); do
  case "$1" in
    --piece) what=piece; values="$2"; shift 2 ;;
    --slot) what=slot; values="$2"; shift 2 ;;
    -m) sizes="$2"; shift 2 ;;
    -r|--repeats) runs="$2"; shift 2 ;;
    -n) ranks="$2"; shift 2 ;;
    *) echo "shm_sweep.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$what" ] || { echo "shm_sweep.sh: give --piece \"SIZES\" or --slot \"SIZES\"" >&2; exit 2; }
[[ "$runs" =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] || { echo "shm_sweep.sh: -r needs a run count" >&2; exit 2; }
if [ -z "$sizes" ]; then
  if [ "$what" = piece ]; then sizes=64K:16M; else sizes=8:32K; fi
fi
var=RINGREDUCE_SHM_$(tr a-z A-Z <<<"$what")
read -r -a shapes <<<"$values"

build_release
source scripts/mpienv.sh
export OMPI_MCA_mpi_yield_when_idle=0
# Every value is checked before anything is measured (one line, exit 2).
for v in "${shapes[@]}"; do
  if ! err=$(env "$var=$v" "$bin" bench --algo memcpy -m 8:8 --iters 1 --warmup 0 2>&1 >/dev/null); then
    echo "shm_sweep.sh: ${err#ringreduce: }" >&2
    exit 2
  fi
done
dir="results/shm-sweep-$what-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$dir"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "mpi: $(mpirun --version 2>&1 | head -1)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '-dirty')"
  echo "command: scripts/shm_sweep.sh $args"
  echo "each: $var=<value> mpirun -n $ranks --bind-to core ringreduce bench --algo shm,memcpy,mpi -m $sizes --format csv"
} > "$dir/env.txt"
echo "== $var over ${shapes[*]}, $runs repeats, sizes $sizes; results in $dir"
for run in $(seq "$runs"); do
  shift_by=$(( (run - 1) % ${#shapes[@]} ))
  order=("${shapes[@]:shift_by}" "${shapes[@]:0:shift_by}")
  for v in "${order[@]}"; do
    echo "-- run $run: $var=$v"
    env "$var=$v" mpirun -n "$ranks" --bind-to core "$bin" bench --algo shm,memcpy,mpi -m "$sizes" \
      --format csv > "$dir/$v-run$run.csv"
  done
done

python3 - "$dir" "$what" "${shapes[@]}" <<'PY' | tee "$dir/summary.txt"
import csv, statistics, sys
d, what, shapes = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {}
for v in shapes:
    import glob
    for f in sorted(glob.glob(f"{d}/{v}-run*.csv")):
        for r in csv.DictReader(open(f)):
            runs.setdefault((v, f), {}).setdefault(int(r["bytes"]), {})[r["algo"]] = float(r["avg_us"])
sizes = sorted({b for t in runs.values() for b in t})
print(f"shm time (us, median of runs) and the paired shm / memcpy and shm / vendor ratios, by {what}")
print(f"{'bytes':>10}  " + "  ".join(f"{v:>22}" for v in shapes) + "  best")
for b in sizes:
    cells, med = [], {}
    for v in shapes:
        ts = [t[b] for (s, _), t in runs.items() if s == v and b in t and "shm" in t[b]]
        if not ts:
            cells.append(f"{'–':>22}")
            continue
        shm = statistics.median(x["shm"] for x in ts)
        mc = statistics.median(x["shm"] / x["memcpy"] for x in ts)
        mv = statistics.median(x["shm"] / x["mpi"] for x in ts)
        med[v] = shm
        cells.append(f"{shm:8.2f} {mc:5.2f}x {mv:5.2f}v")
    best = min(med, key=med.get) if med else "–"
    print(f"{b:>10}  " + "  ".join(cells) + f"  {best}")
PY

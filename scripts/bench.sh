#!/usr/bin/env bash
# Benchmark sweep: every algorithm and the vendor's MPI_Allreduce, side by
# side, at every size, repeated R times with the subjects in a rotated order
# each time; the summary (medians, min–max, paired ratios to the vendor),
# the runs, the environment and the charts go to results/<date>-<host>/.
#
#   scripts/bench.sh [-n RANKS] [-m MIN:MAX] [-r|--repeats R] [--dtype f32] [--op sum]
#                    [--iters N] [--warmup N] [--no-in-place] [--algo a,b,...]
#                    [--calibrate]   (each run calibrates auto's model in its own job first)
#                    [--tune]        (first `calibrate --rules` on the same placement, timing the
#                                     calls the runs time, as many of them; every run's auto
#                                     then takes its rules)
#   scripts/bench.sh --cluster 4 [--rate 1gbit] [--slots L] [...]   on a namespace cluster
#   scripts/bench.sh --mpi mpich [...]   built against and launched by MPICH (one machine;
#                    the `mpi` subject is then MPICH's MPI_Allreduce)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

args="$*"
ranks=2
sizes=4:16M
runs=5
dtype=f32
op=sum
cluster=""
rate=""
slots=1
algo=""
mpi=openmpi
tune=""
extra=()
counts=()
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -m) sizes="$2"; shift 2 ;;
    -r|--repeats) runs="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --op) op="$2"; shift 2 ;;
    --iters) extra+=(--iters "$2"); counts+=(--iters "$2"); shift 2 ;;
    --warmup) extra+=(--warmup "$2"); counts+=(--warmup "$2"); shift 2 ;;
    --no-in-place) extra+=(--no-in-place); shift ;;
    --calibrate) extra+=(--calibrate); shift ;;
    --tune) tune=1; shift ;;
    --cluster) cluster="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --algo) algo="$2"; shift 2 ;;
    --slots) slots="$2"; shift 2 ;;
    --mpi) mpi="$2"; shift 2 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$ranks" =~ ^[0-9]+$ ]] && [ "$ranks" -ge 1 ] || { echo "bench.sh: -n needs a rank count" >&2; exit 2; }
[[ "$runs" =~ ^[0-9]+$ ]] && [ "$runs" -ge 1 ] || { echo "bench.sh: -r needs a run count" >&2; exit 2; }

case "$mpi" in
  openmpi) build_release ;;
  mpich)
    [ -z "$cluster" ] || { echo "bench.sh: --mpi mpich runs on one machine only (the cluster launches Open MPI)" >&2; exit 2; }
    scripts/mpich.sh build
    source scripts/mpienv.sh
    bin="$(readlink -f target/mpich/release/ringreduce)" ;;
  *) echo "bench.sh: --mpi takes openmpi or mpich, not $mpi" >&2; exit 2 ;;
esac

# Validate the arguments with a one-process, one-iteration run before creating anything.
if ! err=$($bin bench --algo ring -m "$sizes" --dtype "$dtype" --op "$op" --iters 1 --warmup 0 \
    --format csv 2>&1 >/dev/null); then
  echo "bench.sh: ${err#ringreduce: }" >&2
  exit 2
fi

# shellcheck source=scripts/launch.sh
source scripts/launch.sh
dir="results/$(date -u +%Y%m%d-%H%M%S)-$where"
mkdir -p "$dir"

# Shared memory only where the ranks share a node.
if [ -n "$algo" ]; then
  IFS=, read -r -a subjects <<<"$algo"
elif [ -n "$cluster" ]; then
  mapfile -t subjects < <(algorithms | grep -vx shm)
else
  mapfile -t subjects < <(algorithms)
fi
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(hostname)"
  echo "setting: $setting"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cores: $(nproc)"
  echo "memory: $(free -h | awk '/^Mem:/ {print $2}')"
  echo "kernel: $(uname -r)"
  echo "rustc: $(rustc --version)"
  if [ "$mpi" = mpich ]; then
    echo "mpi: MPICH $(mpirun.mpich --version 2>&1 | awk '/Version:/ {print $2; exit}') (Hydra)"
  else
    echo "mpi: $(mpirun --version 2>&1 | head -1)"
  fi
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '-dirty')"
  echo "command: scripts/bench.sh $args"
  echo "runs: $runs, each: ringreduce bench --algo <${subjects[*]}, rotated by the run number> -m $sizes --dtype $dtype --op $op ${extra[*]}"
  mpi_environment
} > "$dir/env.txt"

echo "== ${setting}: $runs runs, results in $dir"
if [ -n "$tune" ]; then
  # auto's rules measured on this very placement, up to the largest size.
  max=${sizes#*:}
  echo "-- calibrate --rules (up to $max): $dir/calibration.json"
  # The sweep times the calls the benchmark times (out of place only with --no-in-place).
  placement=()
  [[ " ${extra[*]} " == *" --no-in-place "* ]] && placement=(--no-in-place)
  # As many calls back to back as the runs make: on links that pass bursts
  # faster than their rate (the cluster's token buckets) the calls before a
  # timed one change what it costs (docs/perf/tbf-burst).
  "${launch[@]}" "$(readlink -f $bin)" calibrate --rules "${placement[@]}" "${counts[@]}" --max-bytes "$max" \
    --out "$(readlink -f "$dir")/calibration.json" > "$dir/calibration.txt"
  grep '^rule:' "$dir/calibration.txt" || true
  extra+=(--calibration "$(readlink -f "$dir")/calibration.json")
  echo "tuned: calibrate --rules ${counts[*]:+${counts[*]} }--max-bytes $max (rules in calibration.json, sweep in calibration.txt)" >> "$dir/env.txt"
fi
files=()
for run in $(seq "$runs"); do
  # Rotate the order, so that no subject always runs first (or last) at a size.
  shift_by=$(( (run - 1) % ${#subjects[@]} ))
  order=("${subjects[@]:shift_by}" "${subjects[@]:0:shift_by}")
  algos=$(IFS=,; echo "${order[*]}")
  echo "-- run $run of $runs: --algo $algos"
  "${launch[@]}" "$(readlink -f $bin)" bench --algo "$algos" -m "$sizes" --dtype "$dtype" --op "$op" \
    --format csv "${extra[@]}" > "$dir/run$run.csv"
  files+=("$dir/run$run.csv")
done

$bin summary --csv "${files[@]}" | tee "$dir/summary.txt"
$bin summary --csv "${files[@]}" --format markdown > "$dir/summary.md"
$bin plot --csv "${files[@]}" --out "$dir" ${rate:+--link-rate "$rate"}

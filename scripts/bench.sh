#!/usr/bin/env bash
# Benchmark sweep: every algorithm and the vendor's MPI_Allreduce, side by
# side, at every size; results, environment and plots go to
# results/<date>-<host>/.
#
#   scripts/bench.sh [-n RANKS] [-m MIN:MAX] [--dtype f32] [--op sum] [--iters N]
#   scripts/bench.sh --cluster 4 [--rate 1gbit] [...]   on a namespace cluster
set -euo pipefail
cd "$(dirname "$0")/.."

args="$*"
ranks=2
sizes=4:16M
dtype=f32
op=sum
cluster=""
rate=""
extra=()
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    -m) sizes="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --op) op="$2"; shift 2 ;;
    --iters) extra+=(--iters "$2"); shift 2 ;;
    --warmup) extra+=(--warmup "$2"); shift 2 ;;
    --cluster) cluster="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$ranks" =~ ^[0-9]+$ ]] && [ "$ranks" -ge 1 ] || { echo "bench.sh: -n needs a rank count" >&2; exit 2; }

scripts/setup.sh
source scripts/mpienv.sh
cargo build --release --quiet --bins
bin=target/release/ringreduce

# Validate the arguments with a one-process, one-iteration run before creating anything.
if ! err=$($bin bench --algo ring -m "$sizes" --dtype "$dtype" --op "$op" --iters 1 --warmup 0 \
    --format csv 2>&1 >/dev/null); then
  echo "bench.sh: ${err#ringreduce: }" >&2
  exit 2
fi

stamp=$(date -u +%Y%m%d-%H%M%S)
where=$(hostname)
[ -n "$cluster" ] && where="cluster${cluster}x${rate:-unlimited}"
dir="results/$stamp-$where"
mkdir -p "$dir"

if [ -n "$cluster" ]; then
  ranks=$cluster
  scripts/cluster.sh up "$cluster" ${rate:+--rate "$rate"}
  trap 'scripts/cluster.sh down >/dev/null' EXIT
  launch=(scripts/cluster.sh run -n "$ranks" --)
  setting="namespace cluster: $cluster hosts, links ${rate:-unlimited}, TCP"
else
  # Ranks that fit on the cores measure best busy-polling; yielding adds noise.
  if [ "$ranks" -le "$(nproc)" ]; then export OMPI_MCA_mpi_yield_when_idle=0; fi
  launch=(mpirun -n "$ranks")
  setting="one machine, shared memory, $ranks ranks"
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
  echo "mpi: $(mpirun --version 2>&1 | head -1)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '-dirty')"
  echo "command: scripts/bench.sh $args"
  echo "bench: ringreduce bench --algo all -m $sizes --dtype $dtype --op $op ${extra[*]}"
  env | grep -E '^(OMPI_MCA|RINGREDUCE)_' | sort | sed 's/^/env: /'
} > "$dir/env.txt"

echo "== ${setting}: results in $dir"
"${launch[@]}" "$(readlink -f $bin)" bench --algo all -m "$sizes" --dtype "$dtype" --op "$op" \
  --format csv "${extra[@]}" | tee "$dir/bench.csv"
$bin plot --csv "$dir/bench.csv" --out "$dir" --title "$setting, $dtype $op"

# Our best algorithm (auto included) against the vendor's, per size.
echo
echo "# best of ours / vendor MPI_Allreduce, per size (time ratio; < 1 is faster)"
awk -F, 'NR > 1 {
    if ($4 == "mpi") mpi[$1] = $5
    else if (!($1 in best) || $5 < best[$1]) { best[$1] = $5; name[$1] = $4 }
    sizes[$1] = 1
  }
  END { for (b in sizes) if (b in mpi) printf "%12d  %-16s %10.2f us  mpi %10.2f us  ratio %.2f\n", b, name[b], best[b], mpi[b], best[b] / mpi[b] }' \
  "$dir/bench.csv" | sort -n | tee "$dir/ratios.txt"

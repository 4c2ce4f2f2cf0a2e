#!/usr/bin/env bash
# Every training strategy on the same model, data, seed and global batch, in
# one MPI job (`ringreduce compare`): the table (time and bytes to the target
# accuracy, final accuracy), the CSV of every epoch and the two charts go to
# results/compare-<date>-<where>/.
#
#   scripts/compare.sh [-n RANKS] [--epochs 5] [--target 0.85] [--data fashion-mnist]
#                      [--batch 256] [--lr 0.2] [--strategies "sync:ring local:tau=8 …"]
#                      [--servers 1] [--straggler RANK:FACTOR]   (ps:… strategies; a slow rank)
#                      [--momentum 0.9] [--eval-every STEPS]   (score within epochs too)
#   scripts/compare.sh --cluster 4 --rate 100mbit [--delay 10] [...]   on a namespace cluster
#                      (root; --delay: one-way milliseconds between hosts)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

args="$*"
ranks=2
epochs=5
target=0.85
data=fashion-mnist
batch=256
lr=0.2
strategies="sync:ring local:tau=8 local:tau=32 postlocal:warmup=200,tau=8 oneshot gossip:ring gossip:expo1"
cluster=""
rate=""
delay=""
extra=()
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --strategies) strategies="$2"; shift 2 ;;
    --cluster) cluster="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --delay) delay="$2"; shift 2 ;;
    --servers|--straggler|--momentum|--eval-every) extra+=("$1" "$2"); shift 2 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

build_release

# shellcheck source=scripts/launch.sh
source scripts/launch.sh
dir="results/compare-$(date -u +%Y%m%d-%H%M%S)-$where"
mkdir -p "$dir"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "setting: $setting"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "mpi: $(mpirun --version 2>&1 | head -1)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '-dirty')"
  echo "command: scripts/compare.sh $args"
} > "$dir/env.txt"

echo "== $setting: ${strategies}; results in $dir"
# shellcheck disable=SC2086  # the strategies are one word each
"${launch[@]}" "$bin" compare --data "$data" --epochs "$epochs" --target-acc "$target" \
  --batch "$batch" --lr "$lr" \
  --strategies $strategies --out "$dir/compare.csv" --plot-dir "$dir" ${extra[@]+"${extra[@]}"} \
  --title "$short, $data, $epochs epochs" | tee "$dir/table.txt"

#!/usr/bin/env bash
# Gradient buckets: the same training run with each --bucket-mb setting,
# interleaved over several repeats, and the median step time of each
# (`ringreduce train` prints it, with the buckets auto chose and the step
# time it predicted). Results (each run's output and a summary CSV) go to
# results/buckets-<date>-<where>/.
#
#   scripts/buckets.sh [-n 2] [--sizes "0 1 4 16 64 auto"] [--repeats 3]
#                      [--model wide] [--batch 240] [--epochs 1] [--algo ring]
#                      [--bind core|none] [--compress powersgd:rank=4]
#   scripts/buckets.sh --cluster 4 --rate 1gbit [--slots L] [...]   on a namespace cluster (root),
#                      L ranks per host
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

args="$*"
ranks=2
sizes="0 1 4 16 64 auto"
repeats=3
model=wide
batch=240
epochs=1
algo=ring
compress=none
bind=""
cluster=""
rate=""
slots=1
while (($#)); do
  case "$1" in
    -n) ranks="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;;
    -r|--repeats) repeats="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --algo) algo="$2"; shift 2 ;;
    --compress) compress="$2"; shift 2 ;;
    --bind) bind="$2"; shift 2 ;;
    --cluster) cluster="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --slots) slots="$2"; shift 2 ;;
    *) echo "buckets.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

build_release

# shellcheck source=scripts/launch.sh
source scripts/launch.sh
if [ -z "$cluster" ] && [ -n "$bind" ]; then
  # A rank's communication thread shares its core when bound to one core.
  launch=(mpirun -n "$ranks" --bind-to "$bind")
  [ "$bind" = none ] && export OMPI_MCA_mpi_yield_when_idle=1
  setting="$setting (--bind-to $bind)"
fi
dir="results/buckets-$(date -u +%Y%m%d-%H%M%S)-$where"
mkdir -p "$dir"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "setting: $setting"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "mpi: $(mpirun --version 2>&1 | head -1)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo '-dirty')"
  echo "command: scripts/buckets.sh $args"
  mpi_environment
} > "$dir/env.txt"

echo "== $setting: model $model, batch $batch, --compress $compress, --bucket-mb $sizes × $repeats; results in $dir"
echo "repeat,bucket_mb,step_ms,compute_ms,comm_ms,exposed_ms,overlap,predicted_ms,buckets" > "$dir/runs.csv"
for r in $(seq 1 "$repeats"); do
  for s in $sizes; do
    out="$dir/run-$r-$s.txt"
    "${launch[@]}" "$bin" train --model "$model" --batch "$batch" --epochs "$epochs" --algo "$algo" --compress "$compress" \
      --bucket-mb "$s" --log-every 0 > "$out" 2>&1
    line=$(grep '^steps: median' "$out")
    num() { sed -n "s/.*$1 \([0-9.]*\) ms.*/\1/p" <<<"$line"; }
    step=$(sed -n 's/^steps: median \([0-9.]*\) ms.*/\1/p' <<<"$line")
    predicted=$(sed -n 's/.*predicted \([0-9.]*\) ms,.*/\1/p' <<<"$line")
    overlap=$(sed -n 's/.*overlap \([0-9]*\) %.*/\1/p' <<<"$line")
    nb=$(sed -n 's/^buckets: .* → \([0-9]*\) buckets.*/\1/p' "$out")
    echo "$r,$s,$step,$(num compute),$(num communication),$(num exposed),$overlap,$predicted,${nb:-1}" >> "$dir/runs.csv"
    echo "repeat $r --bucket-mb $s: $line"
    grep '^buckets:' "$out" | sed 's/^/    /' || true
  done
done

# Medians over the repeats, and each setting against the best fixed size.
python3 - "$dir" <<'PY' | tee "$dir/summary.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(f"{sys.argv[1]}/runs.csv")))
med = {}
for s in dict.fromkeys(r["bucket_mb"] for r in rows):
    rs = [r for r in rows if r["bucket_mb"] == s]
    m = lambda k: statistics.median(float(r[k]) for r in rs if r[k])
    med[s] = {k: m(k) for k in ("step_ms", "compute_ms", "comm_ms", "exposed_ms", "overlap")}
    med[s]["buckets"] = rs[-1]["buckets"]
    preds = [float(r["predicted_ms"]) for r in rs if r["predicted_ms"]]
    med[s]["predicted_ms"] = statistics.median(preds) if preds else None
fixed = [s for s in med if s not in ("0", "auto")]
best = min(fixed, key=lambda s: med[s]["step_ms"]) if fixed else None
print("bucket_mb  buckets  step_ms  predicted  compute  comm  exposed  overlap  vs_unbucketed  vs_best  step/max(compute,comm)")
for s, v in med.items():
    pred = f"{v['predicted_ms']:9.1f}" if v["predicted_ms"] else "        –"
    vs0 = v["step_ms"] / med["0"]["step_ms"] if "0" in med else float("nan")
    vsb = v["step_ms"] / med[best]["step_ms"] if best else float("nan")
    bound = v["step_ms"] / max(v["compute_ms"], v["comm_ms"])
    print(f"{s:>9}  {v['buckets']:>7}  {v['step_ms']:7.1f}  {pred}  {v['compute_ms']:7.1f}  {v['comm_ms']:4.1f}  {v['exposed_ms']:7.1f}  {v['overlap']:6.0f}%  {vs0:13.3f}  {vsb:7.3f}  {bound:22.3f}")
if best:
    print(f"best fixed size: {best} MiB ({med[best]['step_ms']:.1f} ms)")
PY

#!/usr/bin/env bash
# Faults on a namespace cluster under `ringreduce elastic`: a job on 4
# hosts loses one host in epoch 2 (a rank killed, a rank stopped, a link
# dropped), and the supervisor relaunches it on the 3 hosts left from its
# newest checkpoint. Prints a table: the step of the fault, the step
# resumed from, steps lost, seconds from the fault to training again
# (measured here: from the injection to the relaunched job's first step),
# and the final test accuracy beside an uninterrupted run's.
#
#   scripts/elastic.sh [--faults "kill stop link"] [--host rr-h3] [--kills 10]
#                      [--strategy sync:auto] [--rate 1gbit] [--epochs 5]
#                      [--checkpoint-every 50] [--timeout 5] [--rejoin]
#                      [--out DIR] [-- EXTRA TRAIN ARGS]
#
# --faults: one run each, on --host; --kills N: N more kills at random steps of epoch
# 2; --checkpoint-every 0: checkpoints at epoch ends only (the parameter
# server's); --rejoin: one more run where the lost host is listed again and
# rejoins at the restart after a second fault. Brings the cluster up and
# down itself (fails if one is already up). Needs root, Open MPI and the
# Fashion-MNIST package (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

faults="kill stop link" host=rr-h3 kills=10 strategy=sync:auto rate=1gbit epochs=5 every=50 timeout=5 rejoin=0
out=results/elastic extra=()
while (($#)); do
  case "$1" in
    --faults) faults="$2"; shift 2 ;;
    --kills) kills="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    --strategy) strategy="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --checkpoint-every) every="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --rejoin) rejoin=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "elastic.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "elastic.sh: needs root (network namespaces)" >&2; exit 2; }
source scripts/mpienv.sh
cargo build --release --quiet
bin=$PWD/target/release/ringreduce
mkdir -p "$out"
out=$(cd "$out" && pwd)
scripts/cluster.sh up 4 --rate "$rate" >/dev/null
trap 'scripts/cluster.sh down >/dev/null' EXIT

batch=256
steps=$((60000 / batch))
every_args=()
[ "$every" != 0 ] && every_args=(--checkpoint-every "$every")
now() { date +%s.%N; }
# The global step in the progress file (empty while it is being written).
progress() { local v; v=$(cat "$1" 2>/dev/null || true); [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo -1; }
# The ringreduce processes of host $1.
ranks_on() { for p in $(ip netns pids "$1" 2>/dev/null); do [ "$(cat /proc/"$p"/comm 2>/dev/null)" = ringreduce ] && echo "$p"; done; true; }

# run NAME FAULT HOST STEP [STRATEGY]: one job under the supervisor; FAULT
# (none, kill, stop, link) hits HOST once the job reaches global step STEP.
run() {
  local name=$1 fault=$2 host=$3 at=$4 strat=${5:-$strategy}
  local dir=$out/$name
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'rr-h1\nrr-h2\nrr-h3\nrr-h4\n' > "$dir/hosts"
  local state=$dir/run.safetensors.elastic
  RINGREDUCE_TIMEOUT=$timeout "$bin" elastic --hostfile "$dir/hosts" --min-np 2 --grace 5 \
    --launcher "$PWD/scripts/cluster.sh run --hostfile {hostfile} -n {np} --" \
    -- train --strategy "$strat" --epochs "$epochs" --batch "$batch" --log-every 0 \
    --checkpoint "$dir/run.safetensors" "${every_args[@]}" --metrics "$dir/metrics.csv" \
    "${extra[@]}" > "$dir/out.txt" 2> "$dir/err.txt" &
  local sup=$! t0="" t1="" hit=""
  # The parameter server's rank 0 is a server, which writes no progress:
  # its fault comes a random fraction of a second after the servers' first
  # shard checkpoints (epoch 1's end), and
  # "training again" is the relaunch.
  local ps=0
  [[ "$strat" == ps:* ]] && ps=1
  if [ "$fault" != none ] && [ $ps = 1 ]; then
    while ! ls "$dir"/run.safetensors.shard0of* >/dev/null 2>&1; do
      kill -0 $sup 2>/dev/null || break
      sleep 0.005
    done
    sleep "0.$((RANDOM % 10))"
    hit="ep1+"
  elif [ "$fault" != none ]; then
    while [ "$(progress "$state/progress")" -lt "$at" ]; do
      kill -0 $sup 2>/dev/null || break
      sleep 0.005
    done
    hit=$(progress "$state/progress")
  fi
  if [ "$fault" != none ]; then
    t0=$(now)
    case "$fault" in
      kill) ranks_on "$host" | xargs -r kill -9 ;;
      stop) ranks_on "$host" | xargs -r kill -STOP ;;
      link) ip -n "$host" link set eth0 down ;;
    esac
    # Training again: the relaunched job's first step (the supervisor
    # removes the progress file before it relaunches).
    if [ $ps = 1 ]; then
      while ! grep -q '^elastic: launch 2' "$dir/err.txt" && kill -0 $sup 2>/dev/null; do sleep 0.005; done
    else
      while [ -e "$state/progress" ] && kill -0 $sup 2>/dev/null; do sleep 0.005; done
      while [ ! -e "$state/progress" ] && kill -0 $sup 2>/dev/null; do sleep 0.005; done
    fi
    t1=$(now)
  fi
  local rc=0
  wait $sup || rc=$?
  if [ "$fault" = link ]; then ip -n "$host" link set eth0 up; fi
  # What the lost host still runs (a stopped or cut-off rank, its daemon).
  [ "$fault" != none ] && { ip netns pids "$host" | xargs -r kill -9 2>/dev/null || true; }
  local acc lost from down
  acc=$(awk '$1 ~ /^[0-9]+$/ && NF >= 3 { a = $3 } END { print a }' "$dir/out.txt")
  from=$(sed -n 's/^restart 1: .*training again from step \([0-9]*\),.*/\1/p' "$dir/out.txt" | head -1)
  lost=$(sed -n 's/^restart 1: .* \([0-9]*\) step(s) lost$/\1/p' "$dir/out.txt" | head -1)
  down=$(sed -n 's/^restart 1: .*, \([0-9.]*\) s after the fault;.*/\1/p' "$dir/out.txt" | head -1)
  local again=-
  [ -n "$t0" ] && again=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  printf '%-10s %-6s %-6s %5s %6s %6s %5s %8s %10s %8s %4s\n' "$name" "$fault" "${host:--}" "${hit:--}" "${from:--}" \
    "${lost:--}" "$(grep -c '^elastic: restart' "$dir/err.txt" || true)" "$again" "${down:--}" "${acc:--}" "$rc" | tee -a "$out/summary.txt"
}

: > "$out/summary.txt"
{
  echo "# scripts/elastic.sh on 4 namespace hosts at $rate: $strategy, $epochs epochs of $steps steps (batch $batch), checkpoint every $every steps, RINGREDUCE_TIMEOUT=$timeout"
  echo "# $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD)"
  printf '%-10s %-6s %-6s %5s %6s %6s %5s %8s %10s %8s %4s\n' run fault host step from lost rest fault→s detected→s test_acc rc
} | tee -a "$out/summary.txt"
run whole none "" 0
# Epoch 2 is global steps steps..2·steps−1.
for f in $faults; do
  run "$f" "$f" "$host" $((steps + RANDOM % steps))
done
for k in $(seq "$kills"); do
  run "kill-$k" kill "rr-h$((1 + RANDOM % 4))" $((steps + RANDOM % steps))
done
if [ "$rejoin" = 1 ]; then
  # Lose rr-h3; once the job runs on 3 hosts, list rr-h3 again and kill
  # rr-h2: the second restart takes rr-h3 back.
  dir=$out/rejoin
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'rr-h1\nrr-h2\nrr-h3\nrr-h4\n' > "$dir/hosts"
  state=$dir/run.safetensors.elastic
  RINGREDUCE_TIMEOUT=$timeout "$bin" elastic --hostfile "$dir/hosts" --min-np 2 --grace 5 \
    --launcher "$PWD/scripts/cluster.sh run --hostfile {hostfile} -n {np} --" \
    -- train --strategy "$strategy" --epochs "$epochs" --batch "$batch" --log-every 0 \
    --checkpoint "$dir/run.safetensors" "${every_args[@]}" --metrics "$dir/metrics.csv" \
    "${extra[@]}" > "$dir/out.txt" 2> "$dir/err.txt" &
  sup=$!
  while [ "$(progress "$state/progress")" -lt $((steps + 50)) ]; do sleep 0.005; done
  ranks_on rr-h3 | xargs -r kill -9
  while [ -e "$state/progress" ]; do sleep 0.005; done
  while [ ! -e "$state/progress" ]; do sleep 0.005; done
  ip netns pids rr-h3 | xargs -r kill -9 2>/dev/null || true
  sed -i 's/^# \(rr-h3\)  # lost:.*/\1/' "$dir/hosts"
  while [ "$(progress "$state/progress")" -lt $((2 * steps + 50)) ]; do sleep 0.005; done
  ranks_on rr-h2 | xargs -r kill -9
  wait $sup || true
  ip netns pids rr-h2 | xargs -r kill -9 2>/dev/null || true
  grep '^elastic: launch' "$dir/err.txt" | tee -a "$out/summary.txt"
  grep '^restart' "$dir/out.txt" | tee -a "$out/summary.txt"
fi

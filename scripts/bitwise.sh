#!/usr/bin/env bash
# Holds two builds of ringreduce to the same training results, bit for bit:
# for every strategy spelling (each sync algorithm, local, post-local,
# one-shot, gossip, each compressor, the parameter server with --replay,
# gradient buckets on and off) at 2 and 3 ranks, both binaries train the
# same synthetic run and their checkpoints are compared byte for byte; the
# `cost` and `verify` outputs are compared with their times masked.
#
#   scripts/bitwise.sh OLD_BINARY [NEW_BINARY]   (NEW default: target/release/ringreduce)
#
# Prints one line per case (same / DIFFERENT) and exits non-zero if any differs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"
old=${1:?usage: scripts/bitwise.sh OLD_BINARY [NEW_BINARY]}
new=${2:-target/release/ringreduce}
source scripts/mpienv.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

strategies=(sync:naive sync:butterfly sync:ring sync:central sync:pipelined sync:rabenseifner sync:hierarchical sync:shm sync:auto
  local:tau=4 local:tau=3,momentum postlocal:warmup=5,tau=4 oneshot gossip:ring gossip:expo1
  sync:ring,compress=fp16 sync,compress=bf16 sync,compress=topk:0.1 "sync,compress=topk:0.1,error-feedback=off"
  sync,compress=qsgd:levels=8 sync:ring,compress=powersgd:rank=1 sync:butterfly,compress=randomk:0.3
  "sync:ring,compress=randomk:0.2,error-feedback=on" "sync:butterfly,compress=powersgd:rank=2,error-feedback=off")
common=(train --data synthetic --hidden 16 --epochs 2 --batch 60 --log-every 0)
failed=0

# run NAME RANKS ARGS...: both binaries, then compare the checkpoints.
run() {
  local name=$1 ranks=$2
  shift 2
  for which in old new; do
    local bin=$old
    [ "$which" = new ] && bin=$new
    mpirun -n "$ranks" "$bin" "${common[@]}" "$@" --checkpoint "$work/$which.safetensors" \
      >"$work/$which.out" 2>&1 || { echo "FAILED  $name p=$ranks ($which): $(tail -1 "$work/$which.out")"; failed=1; return; }
  done
  if cmp -s "$work/old.safetensors" "$work/new.safetensors"; then
    echo "same       p=$ranks  $name"
  else
    echo "DIFFERENT  p=$ranks  $name"
    failed=1
  fi
}

for p in 2 3; do
  for s in "${strategies[@]}"; do
    run "$s" "$p" --strategy "$s"
  done
  run "sync:ring --bucket-mb 0" "$p" --strategy sync:ring --bucket-mb 0
  run "sync:butterfly --bucket-mb 0.001" "$p" --strategy sync:butterfly --bucket-mb 0.001
done

# The parameter server: a recorded run replayed by each binary.
for s in ps:async ps:ssp=1; do # (replays hold the order of the recorded run)
  mpirun -n 3 "$old" "${common[@]}" --strategy "$s" --record "$work/$s.log" >/dev/null 2>&1
  run "$s --replay" 3 --strategy "$s" --replay "$work/$s.log"
done

# Outputs without a run's times.
mask() { sed -E 's/[0-9]+\.[0-9]+(e-?[0-9]+)?/T/g; s/ +/ /g'; } # times, and the widths they set
for args in "cost --ranks 4 --bytes 1M" "cost --ranks 5 --bytes 4K --explain" \
  "cost --ranks 3 --layers 784,128,10 --strategy sync:ring local:tau=4,momentum postlocal:warmup=10,tau=8 oneshot gossip:expo1 sync,compress=topk:0.01 sync:ring,compress=powersgd:rank=2 ps:async,servers=2" \
  "cost --ranks 4 --layers 784,128,10 --compress none fp16 topk:0.01 randomk:0.1 qsgd:levels=16 powersgd:rank=2" "verify"; do
  launch=(mpirun -n 3)
  [ "${args%% *}" = cost ] && launch=() # the cost model runs on one process
  # shellcheck disable=SC2086
  a=$("${launch[@]}" "$old" $args 2>&1 | mask) || true
  # shellcheck disable=SC2086
  b=$("${launch[@]}" "$new" $args 2>&1 | mask) || true
  if [ "$a" = "$b" ]; then echo "same       $args"; else echo "DIFFERENT  $args"; diff <(echo "$a") <(echo "$b") | head -5; failed=1; fi
done
exit $failed

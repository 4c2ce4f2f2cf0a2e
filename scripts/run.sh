#!/usr/bin/env bash
# The main job: build, check the all-reduce on this machine, then train an
# MLP (784-128-10) on Fashion-MNIST with synchronous data-parallel SGD over
# the ring all-reduce, and print the cost model for its gradient size.
#   RANKS=4 EPOCHS=3 scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

ranks="${RANKS:-2}"
epochs="${EPOCHS:-5}"
if [ "$ranks" -le "$(nproc)" ]; then export OMPI_MCA_mpi_yield_when_idle=0; fi
out="results/train-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"

echo "== building (release)"
build_release --examples

echo "== mpirun -n $ranks ringreduce verify (quick)"
mpirun -n "$ranks" "$bin" verify --max-count 4099 | tail -1

echo "== mpirun -n $ranks ringreduce train: MLP 784-128-10 on Fashion-MNIST, ring all-reduce, $epochs epochs"
mpirun -n "$ranks" "$bin" train --data fashion-mnist --model mlp --hidden 128 --epochs "$epochs" \
  --batch 256 --lr 0.2 --momentum 0.9 --algo ring --checkpoint "$out/mlp.safetensors" \
  --metrics "$out/metrics.csv" --plot "$out/loss.png"

params=$(( (784 * 128 + 128 + 128 * 10 + 10) * 4 ))
echo "== cost model for the gradient buffer ($params bytes) at $ranks ranks"
"$bin" cost --ranks "$ranks" --bytes "$params"

echo "== written: $out/metrics.csv, $out/loss.png, $out/mlp.safetensors"

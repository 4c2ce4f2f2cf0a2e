#!/usr/bin/env bash
# The MPICH leg of the tests: builds ringreduce against Debian's MPICH
# (installed beside Open MPI, which stays the default) into target/mpich, so
# the Open MPI build in target/ is left alone, and checks it under
# mpirun.mpich: `verify` at 1 to 4 ranks, `bench --check` (in place too, with
# MPICH's MPI_IN_PLACE) at 3 ranks, and two epochs of `train` at 2 ranks.
#
#   scripts/mpich.sh            build, then check (RINGREDUCE_MPI=mpich scripts/test.sh runs it alone)
#   scripts/mpich.sh build      the build only (scripts/test.sh runs it beside the Open MPI tests)
#   scripts/mpich.sh check      the checks only, on the build already made
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"
step="${1:-both}"
case "$step" in
  both | build | check) ;;
  *) echo "mpich.sh: unknown argument $step (build, check or -h)" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="$PWD/target/mpich"
bin="$CARGO_TARGET_DIR/release/ringreduce"
if [ "$step" != check ]; then
  scripts/setup.sh mpich
  echo "== building against MPICH (MPI_PKG_CONFIG=mpich, $CARGO_TARGET_DIR)"
  # No debug info: this build only runs the checks below.
  CARGO_PROFILE_RELEASE_DEBUG=0 MPI_PKG_CONFIG=mpich cargo build --release --quiet --bins
  [ "$step" = build ] && exit 0
fi
if [ ! -x "$bin" ]; then
  echo "mpich.sh: $bin is missing: run scripts/mpich.sh build first" >&2
  exit 1
fi
# ldd's output is captured first: under pipefail, `ldd | grep -q` fails
# whenever grep exits at the first match before ldd has written the rest
# (ldd then dies of SIGPIPE).
libs=$(ldd "$bin")
if [[ "$libs" != *libmpich.so* ]]; then
  echo "mpich.sh: $bin is not linked with libmpich:" >&2
  grep -i mpi <<<"$libs" >&2
  exit 1
fi
run=(mpirun.mpich)
echo "linked with $(grep -o 'libmpich[^ ]*' <<<"$libs")"

fail=0
for n in 1 2 3 4; do
  echo "== verify at $n rank(s) under MPICH"
  out=$("${run[@]}" -n "$n" "$bin" verify) || fail=1
  # The header, MPICH's known flaws, the tally.
  grep -v '^  ' <<<"$out"
  grep -q ', 0 failed$' <<<"$out" || fail=1
done
echo "== bench --check at 3 ranks under MPICH"
"${run[@]}" -n 3 "$bin" bench --check -m 4:64K -n 3 -w 1 | tail -n 1 || fail=1
echo "== train at 2 ranks under MPICH"
"${run[@]}" -n 2 "$bin" train --data synthetic --epochs 2 --batch 60 --log-every 0 | tail -n 2 || fail=1
if [ "$fail" -ne 0 ]; then
  echo "mpich.sh: the MPICH leg failed" >&2
  exit 1
fi
echo "== MPICH leg passed"

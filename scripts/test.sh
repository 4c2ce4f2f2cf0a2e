#!/usr/bin/env bash
# The test command: formatting, lints, and every test (mpirun tests
# included) against Open MPI, then the MPICH leg (scripts/mpich.sh, whose
# build runs niced beside everything before it).
# RINGREDUCE_MPI=openmpi runs the first part only, RINGREDUCE_MPI=mpich the
# second only. Each phase prints the seconds since the start.
#   scripts/test.sh           the full suite (what CI runs)
#   scripts/test.sh --quick   the inner loop: fmt, clippy (default features),
#                             the unit tests, and verify under mpirun at 2 ranks
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "test.sh: unknown argument $1 (--quick or -h)" >&2; exit 2 ;;
esac
phase() { echo "== $* (at ${SECONDS} s)"; }

case "${RINGREDUCE_MPI:-both}" in
  both | openmpi) ;;
  mpich) exec scripts/mpich.sh ;;
  *) echo "test.sh: RINGREDUCE_MPI must be openmpi, mpich or unset (both), not ${RINGREDUCE_MPI}" >&2; exit 2 ;;
esac

# A fresh clone's full run writes about 2.5 GiB under target/ (1.4 GiB the
# crate's test build, 0.7 GiB the adapters', 0.3 GiB MPICH's): say so at the
# start when the disk holds less, rather than fail later on "No space left".
mkdir -p target
free_mib=$(df -Pm target | awk 'NR == 2 { print $4 }')
if [ -n "$free_mib" ] && [ "$free_mib" -lt 3072 ]; then
  echo "test.sh: only ${free_mib} MiB free where target/ lives; a fresh full run needs about 2.5 GiB" >&2
fi
scripts/setup.sh
both=0
if [ "$quick" = 0 ] && [ "${RINGREDUCE_MPI:-both}" = both ]; then
  both=1
  # The MPICH build (its own target dir) takes the cores the rest leaves
  # idle: clippy's single-threaded stretches, the downloads, the tests that
  # wait on timeouts and rate-limited links. In a session of its own, whose
  # process group is killed if this script stops first, and niced: the
  # session's autogroup too, or Linux's autogroup scheduling would give it
  # half the cores whatever its processes' nice value (clippy took 110 s
  # beside it instead of 50 s). Its packages are installed first, so that
  # two apt-get never run at once.
  scripts/setup.sh mpich
  phase "the MPICH leg's build starts beside the rest (nice 19, target/mpich-build.log)"
  mkdir -p target
  setsid bash -c 'echo 19 >/proc/self/autogroup 2>/dev/null || true; exec nice -n 19 scripts/mpich.sh build' \
    >target/mpich-build.log 2>&1 &
  mpich_build=$!
  trap 'kill -- "-$mpich_build" 2>/dev/null || true' EXIT
fi
source scripts/mpienv.sh

phase "cargo fmt --check"
cargo fmt --all -- --check
# The algorithm and strategy files are modules declared by registry
# macros, which rustfmt does not follow: check them by name.
rustfmt --edition 2021 --check src/algorithms/*.rs src/train/strategies/*.rs
# tests/interop.rs loads a checkpoint in Python with safetensors.numpy:
# when the system Python lacks it, a virtual environment gets it from PyPI,
# beside clippy.
if [ "$quick" = 0 ] && ! python3 -c 'import safetensors.numpy, numpy' 2>/dev/null; then
  if ! target/pyenv/bin/python -c 'import safetensors.numpy, numpy' 2>/dev/null; then
    phase "installing safetensors and numpy (PyPI) into target/pyenv, beside clippy (target/pyenv.log)"
    mkdir -p target
    { python3 -m venv target/pyenv &&
      target/pyenv/bin/pip install --quiet --disable-pip-version-check safetensors numpy; } >target/pyenv.log 2>&1 &
    pyenv=$!
  fi
  export RINGREDUCE_PYTHON="$PWD/target/pyenv/bin/python"
fi
if [ "$quick" = 1 ]; then
  phase "cargo clippy --all-targets -- -D warnings (default features)"
  cargo clippy --all-targets --quiet -- -D warnings
else
  # The adapters (candle, ndarray) in the same run: their lint shares
  # ringreduce's and the dependencies' checks (14 s of CPU more, against
  # 58 s in a target of their own; docs/perf/ci-fresh-clone/opt-level.txt).
  phase "cargo clippy --workspace --all-targets --all-features -- -D warnings (ringreduce's features are its default ones)"
  cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
fi
if [ "$quick" = 1 ]; then
  phase "cargo test --lib"
  cargo test --release --quiet --lib
  phase "mpirun -n 2 ringreduce verify"
  cargo build --release --quiet --bins
  mpirun -n 2 target/release/ringreduce verify --max-count 4099 | tail -n 1
  phase "quick tier passed"
  exit 0
fi
phase "cargo clippy: the core alone, then core + train"
cargo clippy --all-targets --quiet --no-default-features -- -D warnings
cargo clippy --lib --quiet --no-default-features --features train -- -D warnings
phase "cargo test --no-run (the build)"
cargo test --no-run --quiet
if [ -n "${pyenv:-}" ] && ! wait "$pyenv"; then
  cat target/pyenv.log >&2
  echo "test.sh: installing safetensors and numpy into target/pyenv failed (above)" >&2
  exit 1
fi
# The fault and namespace-cluster tests mostly wait (on stall timeouts,
# stopped and killed ranks, rate-limited links): they run in a cargo of
# their own beside the rest, their output kept in target/waiting-tests.log
# and shown when they end. Every other file in tests/ runs in the first.
waiting=(faults cluster)
rest=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  [[ " ${waiting[*]} " == *" $name "* ]] || rest+=(--test "$name")
done
phase "cargo test --test ${waiting[*]} beside the rest (target/waiting-tests.log)"
cargo test "${waiting[@]/#/--test=}" >target/waiting-tests.log 2>&1 &
waiting_tests=$!
# The framework adapters (candle, ndarray) build in a target of their own
# beside the tests, niced: candle turns on features of `half` that would
# rebuild ringreduce in ours, and a target of their own waits on no lock.
phase "the adapters' build (candle, ndarray) beside the tests (nice 10, target/adapters-build.log)"
CARGO_TARGET_DIR=target/adapters nice -n 10 cargo test -p ringreduce-adapters --all-features --no-run \
  >target/adapters-build.log 2>&1 &
adapters_build=$!
phase "cargo test: the unit tests, $((${#rest[@]} / 2)) more test files and the doc tests"
status=0
cargo test --lib --bins "${rest[@]}" && cargo test --doc || status=$?
phase "cargo test --test ${waiting[*]}: waiting for them"
wait "$waiting_tests" || status=$?
cat target/waiting-tests.log
phase "the adapters: LeNet on candle under mpirun, the ndarray views"
if wait "$adapters_build"; then
  CARGO_TARGET_DIR=target/adapters cargo test -p ringreduce-adapters --all-features || status=$?
else
  cat target/adapters-build.log
  echo "test.sh: the adapters' build failed (above)" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "test.sh: cargo test failed (above)" >&2
  exit "$status"
fi
if [ "$both" = 1 ]; then
  phase "the MPICH leg: waiting for its build"
  if ! wait "$mpich_build"; then
    cat target/mpich-build.log >&2
    echo "test.sh: the MPICH build failed (above)" >&2
    exit 1
  fi
  cat target/mpich-build.log
  trap - EXIT
  phase "the MPICH leg"
  scripts/mpich.sh check
fi
phase "all passed"

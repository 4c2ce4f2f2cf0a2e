#!/usr/bin/env bash
# The test command: formatting, lints, and every test (mpirun tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
source scripts/mpienv.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test

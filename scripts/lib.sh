# Sourced by the scripts right after they `cd` to the checkout: what they share.
#   help_if_asked "$@"   on -h or --help (before any `--`), prints the calling
#                        script's header comment and exits 0
#   algorithms           the names `ringreduce bench --algo` takes, from the
#                        built binary "$bin" (never a list written here)
#   build_release [ARGS] scripts/setup.sh, scripts/mpienv.sh, the release
#                        build (`cargo build --release --bins ARGS`); sets
#                        "$bin" to the binary's absolute path
help_if_asked() {
  local a
  for a in "$@"; do
    case "$a" in
      -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "scripts/$(basename "$0")"
        exit 0
        ;;
      --) return ;;
    esac
  done
}

algorithms() {
  "${bin:?algorithms: build the binary first and set bin}" bench --list
}

build_release() {
  scripts/setup.sh
  # shellcheck source=scripts/mpienv.sh
  source scripts/mpienv.sh
  cargo build --release --quiet --bins "$@"
  bin="$(readlink -f target/release/ringreduce)"
}

# For env.txt: the MPI variables of the environment, and what `ringreduce`
# sets in its ranks where they leave it unset (transport::MPI_DEFAULTS; the
# vendor's calls in the same job share it).
mpi_environment() {
  { env | grep -E '^(OMPI_MCA|RINGREDUCE)_' || true; } | sort | sed 's/^/env: /'
  # The entries of MPI_DEFAULTS and OVERLAP_MPI_DEFAULTS, read from their
  # source rather than copied here.
  defaults_of MPI_DEFAULTS "set by ringreduce"
  defaults_of OVERLAP_MPI_DEFAULTS "set by ringreduce train with a communication thread"
}

# The (name, value) pairs of the constant $1 in src/transport/mpi.rs (from
# its `pub const` line to the `;` that ends it, on one line or several)
# that the environment leaves unset, each on a line after "$2: ".
defaults_of() {
  local name value found=
  while read -r name value; do
    found=1
    [ -n "${!name:-}" ] || echo "$2: $name=$value"
  done < <(awk -v c="pub const $1:" 'index($0, c) == 1 { on = 1 } on { print } on && /;$/ { exit }' \
    src/transport/mpi.rs |
    grep -o '("OMPI_MCA_[a-z_]*", "[^"]*")' |
    sed 's/("\([^"]*\)", "\([^"]*\)")/\1 \2/')
  [ -n "$found" ] || echo "$2: (none found: src/transport/mpi.rs has no $1 with OMPI_MCA_ entries)"
}

#!/usr/bin/env bash
# A real multi-host cluster on one machine: N network namespaces ("hosts")
# on a Linux bridge, each with its own address, host name and, optionally, a
# token-bucket rate limit on both ends of its link. MPI runs across them over
# TCP, launched through an rsh agent that enters the host's namespace.
#
#   scripts/cluster.sh up N [--rate 1gbit] [--burst 512kb] [--delay MS] [--slots L]
#                                            create hosts rr-h1 .. rr-hN, each
#                                            with L slots (ranks; default 1);
#                                            when N × L ranks fit the machine's
#                                            cores, each host gets cores of its
#                                            own (host k: cores (k−1)·L .. k·L−1),
#                                            else every host runs on all of them;
#                                            --burst: the token bucket's size
#                                            (default 512kb, or
#                                            RINGREDUCE_CLUSTER_BURST): what
#                                            passes at the veth's speed before
#                                            the rate holds; smaller ones miss
#                                            the rate here (docs/perf/tbf-burst)
#                                            --delay adds MS milliseconds to
#                                            every packet a host sends to
#                                            another: the one-way delay between
#                                            hosts (a user-space delay line on
#                                            a TUN device, scripts/delayline.c:
#                                            netem is missing from some kernels)
#   scripts/cluster.sh run [-n RANKS] [--hostfile F] -- CMD ARGS…
#                                            mpirun CMD with L ranks per host, in
#                                            the caller's directory (CMD: a path,
#                                            or a name on PATH); --hostfile: on
#                                            the hosts F lists instead of all
#                                            (`ringreduce elastic --launcher`)
#   scripts/cluster.sh status                what exists
#   scripts/cluster.sh down                  remove everything `up` created
#
# Needs root (ip netns). Addresses are 10.77.0.K/24 and exist only inside the
# namespaces this script creates; the bridge has no address. Everything is
# named rr-*, and `down` removes exactly that (also after a failed `up`).
# RINGREDUCE_CLUSTER_PREFIX and RINGREDUCE_CLUSTER_SUBNET (three octets)
# change the names and addresses.
set -euo pipefail
# Commands run in the caller's directory; the script works from the repository.
CALLER_DIR=$PWD
cd "$(dirname "$0")/.."
source scripts/lib.sh
help_if_asked "$@"

# Overridable so that tests can run a cluster of their own beside a user's.
PREFIX=${RINGREDUCE_CLUSTER_PREFIX:-rr}
SUBNET=${RINGREDUCE_CLUSTER_SUBNET:-10.77.0}
BRIDGE=${PREFIX}-br0
STATE=/run/ringreduce-cluster-$PREFIX
AGENT=$STATE/rsh-agent.sh

die() { echo "cluster.sh: $*" >&2; exit 2; }
need_root() { [ "$(id -u)" -eq 0 ] || die "needs root (ip netns); run it as root or with sudo"; }
# The cores this script may run on, one per line (from "0-3,6").
allowed_cpus() {
  local part
  for part in $(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/self/status | tr , ' '); do
    seq "${part%-*}" "${part#*-}"
  done
}
hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${PREFIX}-h[0-9]+$" | sort -V || true; }

down() {
  need_root
  for h in $(hosts); do
    ip netns pids "$h" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$h" 2>/dev/null || true
    rm -rf "/etc/netns/$h"
  done
  for v in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^${PREFIX}-v[0-9]+$" || true); do
    ip link delete "$v" 2>/dev/null || true
  done
  ip link delete "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE"
}

up() {
  need_root
  local n="${1:-}" rate="" slots=1 delay= burst=${RINGREDUCE_CLUSTER_BURST:-512kb}
  shift || true
  while (($#)); do
    case "$1" in
      --rate) rate="${2:-}"; [ -n "$rate" ] || die "--rate needs a value such as 1gbit"; shift 2 ;;
      --burst)
        burst="${2:-}"
        [[ "$burst" =~ ^[0-9]+(b|kb|mb)$ ]] || die "--burst needs a size such as 16kb (b, kb or mb)"
        shift 2 ;;
      --delay)
        delay="${2:-}"
        [[ "$delay" =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v d="$delay" 'BEGIN { exit !(d > 0 && d <= 10000) }' \
          || die "--delay needs a one-way delay in milliseconds, more than 0 and at most 10000 (such as 10 or 0.5)"
        shift 2 ;;
      --slots)
        slots="${2:-}"
        [[ "$slots" =~ ^[0-9]+$ ]] && [ "$slots" -ge 1 ] && [ "$slots" -le 64 ] \
          || die "--slots needs a rank count per host from 1 to 64"
        shift 2 ;;
      *) die "unknown argument to up: $1" ;;
    esac
  done
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 64 ] || die "up needs a host count from 1 to 64"
  [ -z "$(hosts)" ] && ! ip link show "$BRIDGE" >/dev/null 2>&1 \
    || die "a cluster is already up ($(hosts | tr '\n' ' ')); run 'scripts/cluster.sh down' first"
  command -v mpirun >/dev/null || die "mpirun not found (run scripts/setup.sh)"
  local line=target/delayline
  if [ -n "$delay" ]; then
    [ -c /dev/net/tun ] || die "--delay needs TUN devices (/dev/net/tun, CONFIG_TUN), which this machine lacks"
    if [ ! -x "$line" ] || [ scripts/delayline.c -nt "$line" ]; then
      command -v cc >/dev/null || die "--delay needs a C compiler (cc) to build scripts/delayline.c"
      mkdir -p target
      cc -O2 -Wall -o "$line" scripts/delayline.c || die "--delay: scripts/delayline.c did not compile"
    fi
  fi
  command -v taskset >/dev/null || die "taskset not found (Debian: util-linux)"
  # The cores each host's ranks run on. Hosts are namespaces on one
  # machine, and Open MPI binds a host's ranks to that host's first cores
  # (--bind-to core for up to 2 ranks): every host would pick core 0. So
  # the hosts get disjoint cores when their ranks fit, as real hosts have,
  # and ranks run unbound (--bind-to none) on their host's cores.
  local cores=()
  mapfile -t cores < <(allowed_cpus)
  local -a host_cpus=()
  local fits=$((n * slots <= ${#cores[@]}))
  for k in $(seq "$n"); do
    if [ "$fits" = 1 ]; then
      host_cpus[k]=$(IFS=,; echo "${cores[*]:$(((k - 1) * slots)):slots}")
    else
      host_cpus[k]=$(IFS=,; echo "${cores[*]}")
    fi
  done
  trap 'echo "cluster.sh: up failed; removing what it made" >&2; down' ERR

  mkdir -p "$STATE"
  : > "$STATE/cpus"
  ip link add "$BRIDGE" type bridge
  ip link set "$BRIDGE" up
  local hostsfile
  hostsfile=$(mktemp)
  echo "127.0.0.1 localhost" > "$hostsfile"
  for k in $(seq "$n"); do echo "$SUBNET.$k ${PREFIX}-h$k" >> "$hostsfile"; done
  : > "$STATE/hostfile"
  for k in $(seq "$n"); do
    local h=${PREFIX}-h$k v=${PREFIX}-v$k
    ip netns add "$h"
    ip link add "$v" type veth peer name eth0 netns "$h"
    ip link set "$v" master "$BRIDGE" up
    ip -n "$h" addr add "$SUBNET.$k/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
    if [ -n "$rate" ]; then
      # Both directions of the link: egress of the host and of the bridge port.
      tc qdisc add dev "$v" root tbf rate "$rate" burst "$burst" latency 50ms
      ip netns exec "$h" tc qdisc add dev eth0 root handle 1: tbf rate "$rate" burst "$burst" latency 50ms
    fi
    if [ -n "$delay" ]; then
      # Once per path, at the sending host: what it sends to the subnet is
      # routed into the delay line's TUN device (dly0); what comes back out
      # of it is forwarded (table 100) onto its link, under the rate limit.
      # Packets from the other hosts are delivered as they arrive.
      ip -n "$h" tuntap add mode tun name dly0
      ip -n "$h" link set dly0 up
      ip netns exec "$h" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
        net.ipv4.conf.dly0.rp_filter=0 net.ipv4.conf.dly0.accept_local=1 net.ipv4.conf.all.send_redirects=0
      ip -n "$h" route replace "$SUBNET.0/24" dev dly0 src "$SUBNET.$k"
      ip -n "$h" route add "$SUBNET.0/24" dev eth0 src "$SUBNET.$k" table 100
      ip -n "$h" rule add iif dly0 lookup 100 pref 100
      # Ends with the namespace (`down` kills what runs in it).
      ip netns exec "$h" setsid "$line" dly0 "$delay" </dev/null >/dev/null 2>"$STATE/delayline-$h.log" &
      echo $! > "$STATE/delayline-$h.pid"
    fi
    # `ip netns exec` bind-mounts /etc/netns/<name>/* over /etc.
    mkdir -p "/etc/netns/$h"
    cp "$hostsfile" "/etc/netns/$h/hosts"
    echo "$h" > "/etc/netns/$h/hostname"
    echo "$h slots=$slots" >> "$STATE/hostfile"
    echo "$h ${host_cpus[k]}" >> "$STATE/cpus"
  done
  rm -f "$hostsfile"
  if [ -n "$delay" ]; then
    sleep 0.2
    for k in $(seq "$n"); do
      local h=${PREFIX}-h$k
      kill -0 "$(cat "$STATE/delayline-$h.pid")" 2>/dev/null \
        || { local why; why=$(head -1 "$STATE/delayline-$h.log"); down; die "--delay: the delay line of $h stopped: $why"; }
    done
  fi
  # The rsh agent: run the command inside the host's namespace, with its own
  # host name (a UTS namespace) and on its own cores, as ssh to that host
  # would.
  cat > "$AGENT" <<AGENT
#!/bin/sh
host="\$1"; shift
cpus=\$(awk -v h="\$host" '\$1 == h { print \$2 }' "$STATE/cpus")
[ -n "\$cpus" ] || { echo "cluster.sh: \$host is not a host of this cluster" >&2; exit 2; }
exec ip netns exec "\$host" taskset -c "\$cpus" unshare --uts sh -c "hostname \$host; \$*"
AGENT
  chmod +x "$AGENT"
  echo "${rate:-unlimited}" > "$STATE/rate"
  echo "${delay:-0}" > "$STATE/delay"
  echo "$slots" > "$STATE/slots"
  trap - ERR
  # Check every host is reachable from the first (when ping is installed).
  if command -v ping >/dev/null; then
    for k in $(seq "$n"); do
      ip netns exec "${PREFIX}-h1" ping -c1 -W2 "$SUBNET.$k" >/dev/null || { down; die "host $k unreachable"; }
    done
  else
    echo "cluster.sh: ping not found (Debian: iputils-ping); hosts not checked for reachability" >&2
  fi
  local placed="each host on cores of its own (${PREFIX}-h1: ${host_cpus[1]}, …)"
  [ "$fits" = 1 ] || placed="$((n * slots)) ranks share cores ${host_cpus[1]}"
  echo "cluster up: $n hosts (${PREFIX}-h1 .. ${PREFIX}-h$n) on $BRIDGE, $SUBNET.0/24, links ${rate:-unlimited}${delay:+ + ${delay} ms one way}, $slots rank(s) per host, $placed"
}

run() {
  need_root
  [ -f "$STATE/hostfile" ] || die "no cluster is up; run 'scripts/cluster.sh up N' first"
  local n slots hostfile=$STATE/hostfile
  n=$(wc -l < "$STATE/hostfile")
  slots=$(cat "$STATE/slots" 2>/dev/null || echo 1)
  local ranks=$((n * slots))
  while (($#)) && [ "$1" != "--" ]; do
    case "$1" in
      -n) ranks="$2"; shift 2 ;;
      --hostfile)
        hostfile=$(cd "$CALLER_DIR" && readlink -e "${2:-}") || die "--hostfile ${2:-}: no such file"
        shift 2 ;;
      *) die "usage: cluster.sh run [-n RANKS] [--hostfile F] -- CMD ARGS…" ;;
    esac
  done
  [ "${1:-}" = "--" ] && shift
  (($#)) || die "usage: cluster.sh run [-n RANKS] -- CMD ARGS…"
  # A path, or a name resolved on PATH (`run -- hostname`), made absolute.
  local cmd
  if [[ "$1" == */* ]]; then
    cmd=$(cd "$CALLER_DIR" && readlink -e "$1") || die "$1 not found"
  else
    cmd=$(type -P "$1") || die "$1 not found on PATH"
  fi
  [ -x "$cmd" ] || die "$1 is not an executable file"
  shift
  source scripts/mpienv.sh
  local export=(-x PATH)
  for v in RINGREDUCE_CALIBRATION RINGREDUCE_ALGO RINGREDUCE_TIMEOUT RINGREDUCE_CHECK RINGREDUCE_SEGMENTS \
    RINGREDUCE_SHM_PIECE RINGREDUCE_SHM_SLOT RINGREDUCE_SHM_WRITES RINGREDUCE_HIER_PIECE; do
    [ -n "${!v:-}" ] && export+=(-x "$v")
  done
  # Ranks on one host talk through shared memory (vader), as on a real node.
  local btl=tcp,self
  [ "$slots" -gt 1 ] && btl=tcp,vader,self
  # mpirun itself runs on the first host (with that host's name), so every
  # address it uses is a cluster one.
  # On the first host's cores: the ranks it starts there inherit them.
  [ -f "$STATE/cpus" ] || die "this cluster was brought up by an older cluster.sh (no cores per host); run 'scripts/cluster.sh down' and 'up' again"
  local cpus1
  cpus1=$(awk -v h="${PREFIX}-h1" '$1 == h { print $2 }' "$STATE/cpus")
  ip netns exec "${PREFIX}-h1" taskset -c "$cpus1" unshare --uts sh -c 'hostname "$0"; exec "$@"' "${PREFIX}-h1" \
    mpirun -n "$ranks" --hostfile "$hostfile" \
    --wdir "$CALLER_DIR" \
    --bind-to none \
    --mca plm_rsh_agent "$AGENT" \
    --mca btl "$btl" \
    --mca btl_tcp_if_include "$SUBNET.0/24" \
    --mca oob_tcp_if_include "$SUBNET.0/24" \
    --mca mpi_yield_when_idle 1 \
    "${export[@]}" \
    "$cmd" "$@" 2> >(grep -v "PMIX ERROR: NO-PERMISSIONS" >&2)
}

status() {
  local hs
  hs=$(hosts)
  if [ -z "$hs" ]; then echo "no cluster"; return; fi
  echo "hosts: $(echo "$hs" | tr '\n' ' ')"
  echo "links: $(cat "$STATE/rate" 2>/dev/null || echo '?'), one-way delay $(cat "$STATE/delay" 2>/dev/null || echo 0) ms"
  echo "ranks per host: $(cat "$STATE/slots" 2>/dev/null || echo 1)"
  if [ -f "$STATE/cpus" ]; then
    echo "cores: $(tr '\n' ';' < "$STATE/cpus" | sed 's/;$//; s/;/; /g')"
  fi
}

case "${1:-}" in
  up) shift; up "$@" ;;
  run) shift; run "$@" ;;
  down) down; echo "cluster down" ;;
  status) status ;;
  *) die "usage: cluster.sh up N [--rate 1gbit] [--delay MS] [--slots L] | run [-n RANKS] -- CMD… | status | down" ;;
esac

# Sourced by bench.sh and compare.sh: how to launch `ranks` ranks, given
# `ranks`, `cluster` (hosts, or empty for this machine), `rate`, `delay` (one-way ms) and `slots`
# (ranks per host, default 1), `mpi` (openmpi, the default, or mpich). Sets
# `where` (for the results directory), `launch` (the command prefix),
# `setting` (for env.txt) and `short` (for chart titles); brings a namespace
# cluster up, and down again on exit.
where=$(hostname)
slots=${slots:-1}
if [ -n "$cluster" ]; then
  where="cluster${cluster}x${rate:-unlimited}${delay:+-${delay}ms}"
  ranks=$((cluster * slots))
  per=""
  if [ "$slots" -gt 1 ]; then
    where="${where}x${slots}"
    per=", $slots ranks per host (by slot; shared memory inside a host)"
  fi
  scripts/cluster.sh up "$cluster" ${rate:+--rate "$rate"} ${delay:+--delay "$delay"} --slots "$slots"
  trap 'scripts/cluster.sh down >/dev/null' EXIT
  launch=(scripts/cluster.sh run -n "$ranks" --)
  setting="namespace cluster: $cluster hosts, links ${rate:-unlimited}${delay:+, ${delay} ms one way}, TCP$per"
  short="$cluster hosts${per:+ × $slots}, ${rate:-unlimited} links${delay:+, ${delay} ms}"
elif [ "${mpi:-openmpi}" = mpich ]; then
  # MPICH's Hydra: ranks bound to cores when they fit (it polls; it never yields).
  where="${where}-mpich"
  if [ "$ranks" -le "$(nproc)" ]; then
    launch=(mpirun.mpich -n "$ranks" -bind-to core)
    setting="one machine, shared memory, MPICH, $ranks ranks bound to cores"
  else
    launch=(mpirun.mpich -n "$ranks")
    setting="one machine, shared memory, MPICH, $ranks ranks on $(nproc) cores (oversubscribed: correctness only)"
  fi
  short="$ranks ranks, shared memory, MPICH"
elif [ "$ranks" -le "$(nproc)" ]; then
  # Ranks that fit on the cores: one core each, busy-polling (yielding adds noise).
  export OMPI_MCA_mpi_yield_when_idle=0
  launch=(mpirun -n "$ranks" --bind-to core)
  setting="one machine, shared memory, $ranks ranks bound to cores"
  short="$ranks ranks, shared memory"
else
  launch=(mpirun -n "$ranks")
  setting="one machine, shared memory, $ranks ranks on $(nproc) cores (oversubscribed: correctness only)"
  short="$ranks ranks, shared memory (oversubscribed)"
fi

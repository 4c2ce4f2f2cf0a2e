# Sourced by the scripts: Open MPI settings for these machines (README, "Across nodes").
# - as root OpenMPI refuses to start unless explicitly allowed;
# - more ranks than cores needs oversubscription (a correctness setting);
# - yielding when idle keeps oversubscribed or namespaced ranks from starving.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
export OMPI_MCA_mpi_yield_when_idle="${OMPI_MCA_mpi_yield_when_idle:-1}"

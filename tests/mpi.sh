# What the MPI shell tests share (sourced after tap.sh): skip when mpirun is missing, let
# OpenMPI run as root, and MPIRUN: mpirun bounded by a timeout (a hang fails instead of
# blocking), ranks oversubscribing the cores and unbound (the engine gives each rank its share).
if ! command -v mpirun > /dev/null; then
  echo "1..0 # SKIP mpirun not installed (scripts/deps.sh installs openmpi-bin)"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(timeout -k 5 240 mpirun --oversubscribe --bind-to none)

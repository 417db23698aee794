# What the MPI shell tests share (sourced after tap.sh): skip when mpirun is missing, let
# OpenMPI run as root, and MPIRUN: mpirun bounded by a timeout (a hang fails instead of
# blocking), ranks oversubscribing the cores and unbound (the engine gives each rank its share);
# and finding a rank's process to kill or stop (rank_pid, kill_at_step2).
if ! command -v mpirun > /dev/null; then
  echo "1..0 # SKIP mpirun not installed (scripts/deps.sh installs openmpi-bin)"
  exit 0
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(timeout -k 5 240 mpirun --oversubscribe --bind-to none)

# descendants PID: every process below PID
descendants() {
  local c
  for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done
}
# rank_pid JOB N: the pid of rank N (its OMPI_COMM_WORLD_RANK) of the job whose shell pid is
# JOB (other jobs on the machine are never touched)
rank_pid() {
  local p
  for p in $(descendants "$1"); do
    if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return
    fi
  done
}
# wait_for PATH SECONDS: until PATH exists
wait_for() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do [ -e "$1" ] && return 0; sleep 0.1; done
  return 1
}
# kill_at_step2 LOG RANK CMD...: runs CMD in the background (output to LOG), kills rank RANK
# with SIGKILL once LOG shows step 2, and waits for the job: the victim's pid in $victim, the
# job's exit status in $rc, the seconds from the kill to its end in $took
kill_at_step2() {
  local log=$1 rank=$2 job start i; shift 2
  "$@" > "$log" 2>&1 &
  job=$!
  for i in $(seq 1 300); do grep -q "^step  *2/" "$log" && break; sleep 0.1; done
  victim=$(rank_pid $job "$rank")
  start=$(date +%s)
  [ -n "$victim" ] && kill -9 "$victim"
  wait $job
  rc=$? took=$(($(date +%s) - start))
}

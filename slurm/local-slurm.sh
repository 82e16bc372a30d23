#!/usr/bin/env bash
# A real Slurm cluster on this machine, for the launch tests (docs/slurm.md): munged,
# slurmctld and one slurmd per node (n1, n2, ...), each slurmd in its own UTS namespace so that
# `hostname` in a job prints its node's name. Everything lives in one folder: configuration,
# munge key and socket, state, spool, logs, pid files. Nothing is started as a system service
# and nothing outside the folder changes except one marked line in /etc/hosts (the node names,
# on 127.0.0.1), removed by `stop`.
#
#   slurm/local-slurm.sh start DIR [NODES]   # default 3 nodes; returns once all are idle
#   export SLURM_CONF=DIR/slurm.conf          # then sbatch, srun, sinfo, squeue, scancel
#   slurm/local-slurm.sh stop DIR             # cancels jobs, stops every daemon, cleans up
#
# Packages: slurmctld slurmd slurm-client munge (scripts/install-deps.sh installs them).
# Needs root (slurmd runs jobs as their users; namespaces). One cluster at a time per machine:
# the node names are fixed. What works here and why each setting is there:
# ../shared/notes/slurm-local.md and docs/slurm.md.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [NODES] | stop DIR" >&2
  exit 2
}

(($# >= 2)) || usage
command=$1
dir=$(realpath -m "$2")
nodes=${3:-3}
hosts_marker="# halo local-slurm $dir"

log() { echo "local-slurm: $*" >&2; }

die() {
  log "$*"
  exit 1
}

# A free TCP port base with `count` consecutive free ports (checked with ss), below the
# kernel's ephemeral range: ports programs get from bind(0) or as the source of a connection
# come from that range, and one taken between this check and slurmd's bind left a node
# "unknown" for good.
free_port_base() {
  local count=$1 base p busy low
  low=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  ((low > 12000 + count)) || die "no room for Slurm's ports below the ephemeral range ($low)"
  for _ in $(seq 1 50); do
    base=$((10000 + RANDOM % (low - 10000 - count)))
    busy=0
    for ((p = base; p < base + count; p++)); do
      if ss -Htan "sport = :$p" | grep -q .; then busy=1; fi
    done
    ((busy == 0)) && echo "$base" && return 0
  done
  die "no free ports found"
}

# Waits up to $2 seconds for the command in $1 to succeed.
wait_until() {
  local what=$1 seconds=$2 end=$((SECONDS + $2))
  while ! eval "$what" >/dev/null 2>&1; do
    ((SECONDS < end)) || return 1
    sleep 0.1
  done
}

start() {
  for program in munged slurmctld slurmd sbatch sinfo unshare ss; do
    command -v "$program" >/dev/null || die "$program is missing: run scripts/install-deps.sh"
  done
  ((EUID == 0)) || die "start needs root (slurmd, namespaces, /etc/hosts)"
  if grep -q "^# halo local-slurm " /etc/hosts; then
    die "another local Slurm cluster runs ($(grep '^# halo local-slurm ' /etc/hosts | head -1 | cut -d' ' -f4)); stop it first"
  fi
  [[ -e "$dir/slurm.conf" ]] && die "$dir already holds a cluster; stop it or pick another folder"
  mkdir -p "$dir"/{munge,state,spool,log,run,tmp}
  chmod 700 "$dir" "$dir/munge"
  local cpus
  cpus=$(nproc)

  # munge: its own key, socket and daemon.
  dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
  chmod 400 "$dir/munge/munge.key"
  munged --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" --force ||
    die "munged did not start; see $dir/log/munged.log"
  wait_until "[[ -S '$dir/munge/munge.socket' ]]" 10 || die "munged has no socket; see $dir/log/munged.log"

  local base names
  base=$(free_port_base $((nodes + 1)))
  names="n[1-$nodes]"
  ((nodes == 1)) && names="n1"
  cat >"$dir/slurm.conf" <<EOF
# Written by slurm/local-slurm.sh; see ../shared/notes/slurm-local.md for why each line.
ClusterName=halolocal
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$base
SlurmdPort=$((base + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
TmpFS=$dir/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
JobRequeue=0
SlurmdTimeout=5
MessageTimeout=3
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$names NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((base + 1))-$((base + nodes)) CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  # A port range in Port= is written [a-b].
  sed -i "s/Port=\([0-9]*\)-\([0-9]*\) CPUs/Port=[\1-\2] CPUs/" "$dir/slurm.conf"
  echo "CgroupPlugin=cgroup/v1" >"$dir/cgroup.conf"
  for ((i = 1; i <= nodes; i++)); do mkdir -p "$dir/spool/n$i" "$dir/tmp/n$i"; done

  {
    echo "$hosts_marker"
    echo "127.0.0.1 $(for ((i = 1; i <= nodes; i++)); do printf 'n%d ' "$i"; done)$hosts_marker"
  } >>/etc/hosts

  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF" -i || die "slurmctld did not start; see $dir/log/slurmctld.log"
  for ((i = 1; i <= nodes; i++)); do
    unshare --uts sh -c "hostname n$i && exec slurmd -f '$SLURM_CONF' -N n$i" ||
      die "slurmd n$i did not start; see $dir/log/slurmd-n$i.log"
  done
  if ! wait_until "[[ \$(sinfo -h -o '%T' | sort -u | tr -d '\n') == idle ]]" 60; then
    sinfo -N -l >&2 || true
    for log_file in "$dir"/log/*.log; do
      echo "--- end of $log_file" >&2
      tail -n 5 "$log_file" >&2 || true
    done
    die "the nodes did not become idle within 60 s; see $dir/log"
  fi
  log "$nodes node(s) idle; export SLURM_CONF=$SLURM_CONF"
}

# Whether process $1 is gone (a zombie whose parent has not reaped it counts as gone).
gone() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null || true)
  [[ -z "$state" || "$state" == Z* ]]
}

# Stops the processes of the given pid files: SIGTERM to all, up to 10 s for them to exit,
# then SIGKILL to any left, and up to 5 s more for those to be gone.
stop_pidfiles() {
  local pids=() pid pidfile
  for pidfile in "$@"; do
    [[ -f "$pidfile" ]] || continue
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && pids+=("$pid")
  done
  ((${#pids[@]} > 0)) || return 0
  local end=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while ! gone "$pid" && ((SECONDS < end)); do sleep 0.05; done
    if ! gone "$pid"; then
      kill -9 "$pid" 2>/dev/null || true
      # SIGKILL is not instant either: stop returns only once the process is gone.
      local kill_end=$((SECONDS + 5))
      while ! gone "$pid" && ((SECONDS < kill_end)); do sleep 0.02; done
    fi
  done
}

stop() {
  if [[ -f "$dir/slurm.conf" ]]; then
    export SLURM_CONF="$dir/slurm.conf"
    scancel --full --quiet --partition=local 2>/dev/null || true
    stop_pidfiles "$dir"/run/slurmd-*.pid "$dir/run/slurmctld.pid"
  fi
  stop_pidfiles "$dir/munge/munged.pid"
  # Job steps started by the slurmds (slurmstepd) end with them; any left get no second chance.
  pkill -9 -f "slurmstepd.*$dir" 2>/dev/null || true
  if grep -qF "$hosts_marker" /etc/hosts; then
    # /etc/hosts may be a bind mount (containers): rewrite it in place, never replace it.
    grep -vF "$hosts_marker" /etc/hosts >"$dir/hosts.new" || true
    cat "$dir/hosts.new" >/etc/hosts
  fi
  rm -rf "$dir"
}

case "$command" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac

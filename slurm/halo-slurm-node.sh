#!/usr/bin/env bash
# One task of a job's halo step (docs/slurm.md): `srun --ntasks-per-node=1` runs it on every
# node of the allocation. The batch script (slurm/halo.sbatch) writes the job's cluster secret
# (mode 0600) and starts halo-gcs on a free port, which publishes its address in the job
# folder; every task waits for that address (polling with backoff, no fixed sleep), starts
# halo-node with the node's resources from the allocation, and runs until the step is
# cancelled, when halo-node unregisters and stops.
#
# The job folder, HALO_JOB_DIR (default $SLURM_SUBMIT_DIR/.halo/job-$SLURM_JOB_ID, on the
# filesystem every node shares), holds what the job's programs need to find the cluster:
#   cluster_secret        the job's secret, mode 0600
#   gcs.address           the GCS's transport address, once it serves
#   gcs.failed            there when the GCS exited while starting: the tasks stop waiting
#   node-<name>.json      each node daemon's state (address, state), rewritten as it changes
#   gcs.log, node-<name>.log   the daemons' logs: where to look when a launch fails
#
# Knobs (environment): HALO_BIN_DIR (where halo-gcs and halo-node are; default: next to this
# script's build, else PATH), HALO_SLURM_GCS_WAIT_S (60: how long a node waits for the GCS),
# HALO_OBJECT_STORE_MEMORY and any other HALO_* knob of halo-node / halo-gcs.
set -euo pipefail

fail() {
  echo "halo-slurm-node[${SLURMD_NODENAME:-?}]: $*" >&2
  exit 1
}

[[ -n "${SLURM_JOB_ID:-}" && -n "${SLURM_NODEID:-}" ]] ||
  fail "not inside a Slurm step (SLURM_JOB_ID / SLURM_NODEID unset): run it with srun"
job_dir=${HALO_JOB_DIR:-${SLURM_SUBMIT_DIR:-$PWD}/.halo/job-$SLURM_JOB_ID}
node=${SLURMD_NODENAME:-$(hostname)}
bin_dir=${HALO_BIN_DIR:-}
if [[ -z "$bin_dir" ]]; then
  bin_dir=$(dirname "$(command -v halo-node 2>/dev/null || echo /nonexistent/halo-node)")
fi
[[ -x "$bin_dir/halo-node" ]] ||
  fail "halo-node not found in '$bin_dir': set HALO_BIN_DIR or put it on PATH"
# The address this node's daemons listen on: what its Slurm node name resolves to.
host=$(getent ahostsv4 "$node" | awk 'NR == 1 { print $1 }')
[[ -n "$host" ]] || fail "cannot resolve this node's name '$node' to an IPv4 address"

node_pid=""

stop_daemons() {
  trap - TERM INT HUP
  [[ -n "$node_pid" ]] && kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  exit 0
}
trap stop_daemons TERM INT HUP

# The GCS's address, once it serves: poll with backoff (5 ms doubling to 50 ms). The batch
# script started the GCS as it started this step, so it is usually there at the first look.
deadline=$((SECONDS + ${HALO_SLURM_GCS_WAIT_S:-60}))
delay_ms=5
until [[ -s "$job_dir/gcs.address" && -s "$job_dir/cluster_secret" ]]; do
  [[ ! -e "$job_dir/gcs.failed" ]] ||
    fail "halo-gcs exited while starting; see $job_dir/gcs.log on the job's first node"
  ((SECONDS < deadline)) ||
    fail "no GCS address in $job_dir/gcs.address after ${HALO_SLURM_GCS_WAIT_S:-60} s; see $job_dir/gcs.log on the job's first node"
  sleep "$(printf '0.%03d' "$delay_ms")"
  delay_ms=$((delay_ms * 2 > 50 ? 50 : delay_ms * 2))
done

# Resources from the allocation, not the whole machine: its CPUs, and its memory when the job
# asked for some (--mem, in MiB).
memory_bytes=-1
[[ -n "${SLURM_MEM_PER_NODE:-}" ]] && memory_bytes=$((SLURM_MEM_PER_NODE * 1024 * 1024))
"$bin_dir/halo-node" --gcs_address="$(<"$job_dir/gcs.address")" \
  --secret_file="$job_dir/cluster_secret" --host="$host" --port=0 \
  --state_file="$job_dir/node-$node.json" --num_cpus="${SLURM_CPUS_ON_NODE:--1}" \
  --memory_bytes="$memory_bytes" --labels="slurm_node=$node" \
  >>"$job_dir/node-$node.log" 2>&1 &
node_pid=$!
# Until the step is cancelled (the trap stops the daemon), or the daemon exits on its own. A
# daemon that dies ends this task with success: the rest of the step (and the cluster, which
# has declared the node dead) goes on; srun --kill-on-bad-exit would take it all down.
status=0
wait "$node_pid" || status=$?
echo "halo-slurm-node[$node]: halo-node exited ($status); see $job_dir/node-$node.log" >&2
stop_daemons

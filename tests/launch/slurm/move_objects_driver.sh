#!/usr/bin/env bash
# The driver of the Slurm launch tests, run by slurm/halo.sbatch once the job's halo cluster is
# up: checks that every allocated node is ALIVE, then on each node in turn puts an object
# (objstore_tool put, through `srun --overlap` on that node) and reads it intact on every other
# node. Prints "ALIVE <n>" and, at the end, "MOVED <nodes>". Needs HALO_OBJSTORE_TOOL.
#
# With `--kill NODE` first, it SIGKILLs that node's halo-node before moving objects, waits
# until `halo status` shows it DEAD (printing "DEAD_AFTER_MS <ms>"), and moves objects between
# the nodes left: the job goes on without it.
set -euo pipefail
tool=${HALO_OBJSTORE_TOOL:?}
nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
count=$(wc -w <<<"$nodes")

alive=$(halo_status_json=$("$HALO_BIN_DIR/halo" status --json) &&
  jq '[.nodes[] | select(.state == "ALIVE")] | length' <<<"$halo_status_json")
echo "ALIVE $alive"
# The node daemons' process ids, for the test's check that they leave nothing in /dev/shm.
echo "DAEMON_PIDS $(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$HALO_JOB_DIR"/node-*.json | tr '\n' ' ')"
((alive == count)) || { echo "expected $count ALIVE nodes" >&2; exit 1; }

victim=""
if [[ "${1:-}" == "--kill" ]]; then
  victim=$2
  shift 2
fi

node_address() {
  sed -n 's/.*"address": *"\([^"]*\)".*/\1/p' "$HALO_JOB_DIR/node-$1.json"
}
# Runs a command on node $1, as a client of that node's daemon.
on() {
  local node=$1
  shift
  srun --overlap --nodelist="$node" --nodes=1 --ntasks=1 \
    env HALO_NODE_ADDRESS="$(node_address "$node")" "$@"
}

if [[ -n "$victim" ]]; then
  pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$HALO_JOB_DIR/node-$victim.json")
  address=$(node_address "$victim")
  srun --overlap --nodelist="$victim" --nodes=1 --ntasks=1 kill -9 "$pid"
  killed_ns=$(date +%s%N)
  end=$((SECONDS + 30))
  until "$HALO_BIN_DIR/halo" status --json |
    jq -e --arg a "$address" '.nodes[] | select(.address == $a and .state == "DEAD")' >/dev/null; do
    ((SECONDS < end)) || { echo "node $victim not declared DEAD within 30 s" >&2; exit 1; }
    sleep 0.02
  done
  echo "DEAD_AFTER_MS $((($(date +%s%N) - killed_ns) / 1000000))"
  nodes=$(tr ' ' '\n' <<<"$nodes" | grep -vx "$victim")
  count=$(wc -w <<<"$nodes")
fi

size=$((8 << 20))
seed=1
for writer in $nodes; do
  # The writer holds its reference until its stdin closes.
  coproc PUT { on "$writer" "$tool" put "$size" "$seed"; }
  read -r tag ref sum <&"${PUT[0]}"
  [[ "$tag" == REF ]] || { echo "put on $writer: $tag $ref $sum" >&2; exit 1; }
  for reader in $nodes; do
    [[ "$reader" == "$writer" ]] && continue
    got=$(on "$reader" "$tool" get "$ref" "$sum" 30000)
    [[ "$got" == "OK $size" ]] || { echo "get on $reader of $writer's object: $got" >&2; exit 1; }
    echo "$writer -> $reader: $got"
  done
  exec {PUT[1]}>&-
  wait "$PUT_PID" || true
  seed=$((seed + 1))
done
echo "MOVED $count"

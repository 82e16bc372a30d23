#!/usr/bin/env bash
# Installs what is missing, builds halo and runs its demo job: an embedded local cluster of
# node daemons (halo::init() with no address), objects put on the first node and read on each
# of the others (fetched between the nodes' stores), with put and read throughput printed.
#
# Usage: scripts/demo.sh [--nodes=3] [--objects=8] [--object-mib=64]
# Environment: those of scripts/build.sh; HALO_TEMP_DIR for the cluster's session folder
# (default /tmp/halo). The transport layer's own demo is build/transport/halo-transport-demo.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${HALO_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

demo="$build_dir/bin/halo-objstore-demo"
if [[ ! -x "$demo" ]]; then
  echo "demo: $demo was not built (examples/objstore_demo defines it)" >&2
  exit 1
fi
exec "$demo" "$@"

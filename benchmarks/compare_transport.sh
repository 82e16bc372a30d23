#!/usr/bin/env bash
# Compares halo's transport with ucx_perftest and fi_pingpong, alternating runs in the same
# session (see ../shared/BENCH.md); writes build/bench/transport.json and prints a table.
# Options: --pairs N, --seconds S, --backends ucx,ofi, --links shm,tcp,tcp-hosts,
# --metrics am_latency,rpc_latency,bandwidth, --sizes 4096,..., --build DIR.
# Needs root for the two test hosts (network namespaces) of the tcp-hosts points.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_transport.py" "$@"

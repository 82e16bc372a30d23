#!/usr/bin/env bash
# The HA object benchmarks (issue 5, ../shared/BENCH.md): HA puts with 2 and 3 primary copies
# at 4 KiB, 1 MiB and 64 MiB against a plain put plus one raw ucx_perftest put of the same size;
# writes build/bench/ha.json and prints a table. Starts its own halo-gcs and three halo-node
# daemons and stops them at the end, also on failure or interrupt.
# Options: --sizes 4096,...; --copies 2,3; --pairs N; --seconds S; --build DIR (default build).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_ha.py" "$@"

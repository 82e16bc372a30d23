#!/usr/bin/env bash
# The HA object benchmarks (issue 5, ../shared/BENCH.md): ha_put_time (HA puts with 2 and 3
# primary copies at 4 KiB, 1 MiB and 64 MiB against a plain put plus one raw ucx_perftest
# transfer of the same size), rereplication_bandwidth (bytes restored per second after a holder
# is SIGKILLed, against ucx_perftest at 64 MiB) and failover_read_ms (a 64 MiB read whose
# holder is SIGKILLed mid-transfer, from the kill to the read's return). Writes
# build/bench/ha.json and prints a table. Starts its own halo-gcs and halo-node daemons and
# stops them at the end, also on failure or interrupt.
# Options: --metrics ha_put_time,rereplication_bandwidth,failover_read_ms; --sizes 4096,...;
# --copies 2,3; --pairs N; --seconds S; --objects N; --kill-after-ms MS; --build DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_ha.py" "$@"

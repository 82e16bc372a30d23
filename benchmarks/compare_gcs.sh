#!/usr/bin/env bash
# The GCS benchmarks (issue 3, ../shared/BENCH.md): durable writes against Redis with an
# append-only file (alternating pairs), restart time, node death detection and health-check
# CPU; writes build/bench/gcs.json and prints a table. About 5 minutes with the defaults.
# Options: --metrics writes_fsync_always,writes_group_commit,restart_seconds,
# death_detection_ms,healthcheck_cpu_cores; --pairs N, --seconds S (writes); --restarts N,
# --restart-nodes N, --restart-kv N; --death-samples N, --hc-period-ms/--hc-timeout-ms/
# --hc-failure-threshold/--hc-initial-delay-ms; --sim-nodes N, --cpu-seconds S; --build DIR,
# --workdir DIR (where both servers keep their files: the disk measured).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_gcs.py" "$@"

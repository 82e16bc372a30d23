#!/usr/bin/env bash
# The object store benchmarks (issue 4, ../shared/BENCH.md): small puts and gets, put bandwidth
# against memcpy, and gets from another node against ucx_perftest over shared memory and between
# two test hosts; writes build/bench/objstore.json and prints a table. About 10 minutes with the
# defaults. Starts its own halo-gcs and halo-node daemons (and two network namespaces for
# tcp-hosts, which needs root) and removes them all at the end, also on failure or interrupt.
# Options: --metrics small_put_ops,small_put_ops_2clients,small_get_ops,put_bandwidth,
# remote_get_bandwidth; --pairs N, --seconds S; --put-sizes 1048576,...; --remote-sizes ...;
# --links shm,tcp-hosts; --small-get-objects N; --build DIR (default build), --workdir DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_objstore.py" "$@"

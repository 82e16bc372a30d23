#!/usr/bin/env bash
# The launch benchmarks (issue 6, ../shared/BENCH.md): cluster_start_seconds, from sbatch of
# slurm/halo.sbatch to its driver running on 3 ALIVE nodes, against an empty 3-node srun step;
# mpirun_start_seconds, halo-launch-mpi under mpirun to its driver, against an empty mpirun -np 3
# in the same run, on a local Slurm cluster this script starts and stops (needs root).
# Writes build/bench/launch.json and prints a table. Options: --pairs N; --build DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/compare_launch.py" "$@"

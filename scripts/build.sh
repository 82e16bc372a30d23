#!/usr/bin/env bash
# Configures halo with CMake and Ninja and builds everything: libraries, programs, tests and
# benchmarks. Warnings in halo's own code are errors.
#
# Usage: scripts/build.sh [more cmake options, e.g. -DHALO_BUILD_BENCHMARKS=OFF]
# Environment:
#   HALO_BUILD_DIR    build folder (default: build/ at the repository's root)
#   HALO_BUILD_TYPE   CMake build type (default: RelWithDebInfo)
#   HALO_BUILD_JOBS   parallel compile jobs (default: Ninja's choice)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${HALO_BUILD_DIR:-$root/build}"

cache="$build_dir/CMakeCache.txt"
if [[ -f "$cache" ]] && ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$cache"; then
  echo "build: $build_dir was configured with another generator than Ninja;" \
    "remove it (rm -rf $build_dir) and run again" >&2
  exit 1
fi

cmake -G Ninja -S "$root" -B "$build_dir" \
  -DCMAKE_BUILD_TYPE="${HALO_BUILD_TYPE:-RelWithDebInfo}" \
  -DHALO_WERROR=ON \
  "$@"
cmake --build "$build_dir" ${HALO_BUILD_JOBS:+--parallel "$HALO_BUILD_JOBS"}

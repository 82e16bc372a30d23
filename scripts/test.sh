#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test, and checks the formatting of
# the sources. Exits non-zero if any step or any test fails. This is what CI runs.
#
# Usage: scripts/test.sh [ctest options, e.g. -L transport, -R Gcs, -j2]
# Environment: those of scripts/build.sh; CTEST_PARALLEL_LEVEL to run tests in parallel.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
build_dir="${HALO_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

status=0
# Each test has its own time limit in CMake (the TIMEOUT property); --timeout applies to any
# test that has none. --no-tests=error: a run that finds no test is a failure, not a pass.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --timeout 900 "$@" ||
  status=$?

"$root/scripts/check-format.sh" || status=1

if ((status != 0)); then
  echo "test: FAILED (see above)" >&2
fi
exit "$status"

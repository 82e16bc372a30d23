#!/usr/bin/env bash
# Installs what is missing, builds halo and runs its demo: two processes that exchange
# messages and bulk data through halo's transport layer and print latency and bandwidth.
#
# Usage: scripts/demo.sh [options of halo-transport-demo]
# Environment: those of scripts/build.sh; HALO_TRANSPORT=ucx|ofi picks the backend.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${HALO_BUILD_DIR:-$root/build}"

"$root/scripts/install-deps.sh"
"$root/scripts/build.sh"

demo="$build_dir/transport/halo-transport-demo"
if [[ ! -x "$demo" ]]; then
  echo "demo: $demo was not built: the build has no transport demo program yet" \
    "(transport/ must define the halo-transport-demo target)" >&2
  exit 1
fi
exec "$demo" "$@"

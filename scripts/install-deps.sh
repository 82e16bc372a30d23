#!/usr/bin/env bash
# Installs the Debian packages halo needs to build, test and benchmark, and only those that
# are missing. A second run installs nothing, needs no network and takes a fraction of a
# second. `apt-get update` runs only when an install fails without it (a fresh machine whose
# package lists are empty or stale).
#
# Usage: scripts/install-deps.sh        (as root, or as a user who may sudo)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

packages=(
  # tool chain
  build-essential g++ cmake ninja-build pkg-config git
  # RDMA transports (here: shared memory and TCP through the same APIs) and their peer tools
  libucx-dev ucx-utils
  libfabric-dev libfabric-bin
  libopenmpi-dev openmpi-bin
  # serialization, topology, crypto, logging, command line, containers
  libprotobuf-dev protobuf-compiler
  libhwloc-dev
  libssl-dev
  libspdlog-dev libfmt-dev
  libcli11-dev
  libabsl-dev
  # serialization of non-trivially-copyable values in halo::put (header-only)
  libcereal-dev
  # checksums of the GCS's log records and snapshots (zlib's crc32)
  zlib1g-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev
  libbenchmark-dev
  # the GCS benchmark's peer (redis-server --appendonly yes, redis-benchmark)
  redis-server redis-tools
  # test hosts: ip, tc and bridge (iproute2), nsenter (util-linux)
  iproute2 util-linux procps
  # checks and scripts
  clang-format python3 jq
  # the local Slurm cluster of the launch tests (slurm/local-slurm.sh): controller, node
  # daemons, client commands, authentication
  slurmctld slurmd slurm-client munge
)

# hwloc's command-line tools (lstopo, hwloc-bind): the -nox build has the same tools without
# the X11 libraries; either one will do.
hwloc_tools=hwloc-nox

# One dpkg-query for every name: the names of those installed, one a line.
installed_of() {
  dpkg-query -W -f='${db:Status-Status} ${Package}\n' "$@" 2>/dev/null |
    awk '$1 == "installed" { print $2 }' || true
}

missing_of() {
  local installed
  installed=" $(installed_of "$@" | tr '\n' ' ') "
  for p in "$@"; do
    [[ "$installed" == *" $p "* ]] || echo "$p"
  done
}

mapfile -t missing < <(missing_of "${packages[@]}")
if [[ -n "$(missing_of hwloc)" && -n "$(missing_of hwloc-nox)" ]]; then
  missing+=("$hwloc_tools")
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo --preserve-env=DEBIAN_FRONTEND)
else
  echo "install-deps: these packages are missing: ${missing[*]}" >&2
  echo "install-deps: run this script as root (or install sudo) to install them" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
# Debian starts the daemons of packages it installs (munge, slurmctld, slurmd) at once; the
# tests start their own, with their own configuration. A policy-rc.d that says "no" for the
# length of the install keeps the packages from starting theirs.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi
# Wait for a concurrent apt/dpkg run (another build on this machine) instead of failing.
apt_install=("${as_root[@]}" apt-get install -y --no-install-recommends
  -o DPkg::Lock::Timeout=600 "${missing[@]}")
if ! "${apt_install[@]}"; then
  echo "install-deps: install failed; updating the package lists and trying again"
  "${as_root[@]}" apt-get update -o DPkg::Lock::Timeout=600
  "${apt_install[@]}"
fi

mapfile -t still_missing < <(missing_of "${missing[@]}")
if ((${#still_missing[@]} > 0)); then
  echo "install-deps: still missing after the install: ${still_missing[*]}" >&2
  exit 1
fi
echo "install-deps: done"

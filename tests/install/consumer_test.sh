#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and uses it as an application would: builds
# examples/find_package_consumer with find_package(halo) and runs both programs (the second
# starts an embedded cluster from the installed daemons), then builds objects.cc again with
# only `pkg-config --cflags --libs halo`, as a Makefile would, and runs it.
set -euo pipefail
build=$1
source_dir=$2
prefix=$(mktemp -d /tmp/halo-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix/usr" > "$prefix/install.log"
cmake -G Ninja -S "$source_dir/examples/find_package_consumer" -B "$prefix/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" > "$prefix/configure.log" || { cat "$prefix/configure.log"; exit 1; }
ninja -C "$prefix/consumer" > "$prefix/build.log" || { cat "$prefix/build.log"; exit 1; }
# Only the install tree: no build folder to fall back on.
export HALO_TEMP_DIR="$prefix/tmp"
"$prefix/consumer/halo_consumer"
env -u HALO_BIN_DIR "$prefix/consumer/halo_objects"

pc_dir=$(dirname "$(find "$prefix/usr" -name halo.pc | head -n 1)")
[[ -n "$pc_dir" ]] || { echo "no halo.pc installed" >&2; exit 1; }
flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --cflags --libs halo)
c++ -o "$prefix/objects-pc" "$source_dir/examples/find_package_consumer/objects.cc" $flags
env -u HALO_BIN_DIR "$prefix/objects-pc"
PKG_CONFIG_PATH="$pc_dir" pkg-config --exists halo-mpi || { echo "halo-mpi.pc unusable" >&2; exit 1; }

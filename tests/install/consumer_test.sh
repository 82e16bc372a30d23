#!/usr/bin/env bash
# Installs the build tree into a temporary prefix, builds examples/find_package_consumer
# against it with find_package(halo), and runs it: the installed package must be usable.
set -euo pipefail
build=$1
source_dir=$2
prefix=$(mktemp -d /tmp/halo-install-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix/usr" > "$prefix/install.log"
cmake -G Ninja -S "$source_dir/examples/find_package_consumer" -B "$prefix/consumer" \
  -DCMAKE_PREFIX_PATH="$prefix/usr" > "$prefix/configure.log" || { cat "$prefix/configure.log"; exit 1; }
ninja -C "$prefix/consumer" > "$prefix/build.log" || { cat "$prefix/build.log"; exit 1; }
"$prefix/consumer/halo_consumer"

#!/usr/bin/env bash
# Buildroot post-build: os-release with the workspace version; /sbin/modprobe for the kernel.
# Argument 1: the target directory.
set -euo pipefail
target=$1
top=$(cd "$(dirname "$0")/../../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)
cat > "$target/etc/os-release" <<OSR
NAME="zennet-os"
ID=zennet-os
VERSION_ID=$version
PRETTY_NAME="zennet-os $version"
BUILD_ID=buildroot
OSR
[ -e "$target/sbin/modprobe" ] || ln -sf ../bin/busybox "$target/sbin/modprobe"
# The overlay's rcS does everything; Buildroot's numbered init scripts are not used.
find "$target/etc/init.d" -name 'S[0-9]*' -delete

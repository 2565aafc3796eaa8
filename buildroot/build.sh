#!/usr/bin/env bash
# `make buildroot-image BR=<path>`: builds zennet-os with Buildroot 2026.05.1 and this
# BR2_EXTERNAL tree. Needs the internet (sources, crates) and about an hour on 2 cores.
# Usage: buildroot/build.sh BUILDROOT_DIR OUTPUT_DIR
set -euo pipefail
br=$(cd "$1" && pwd)
out=$2
ext=$(cd "$(dirname "$0")" && pwd)
want=2026.05.1
have=$(sed -n 's/^export BR2_VERSION := //p' "$br/Makefile")
[ "$have" = "$want" ] || { echo "buildroot: $br is $have; this tree is pinned to $want" >&2; exit 1; }
mkdir -p "$out"
make -C "$br" O="$out" BR2_EXTERNAL="$ext" zennet_x86_64_defconfig
make -C "$br" O="$out"
echo "buildroot: images in $out/images (zennet-os.img, .qcow2, .vmdk, .ova, .img.xz)"

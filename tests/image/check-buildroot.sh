#!/usr/bin/env bash
# `make test-buildroot`: what can be checked offline about the BR2_EXTERNAL tree.
#  - files present; external.desc names ZENNET; Config.in/external.mk reach the package
#  - the defconfig names the zennet-agent package, the shared kernel fragment and the ONE
#    rootfs overlay (buildroot/board/zennet/rootfs-overlay, also used by image/build.sh)
#  - genimage uses offset = 1M; post-image reuses image/convert.sh (OVA)
#  - shellcheck of the board scripts and the overlay's init scripts
#  - with BR=<buildroot-2026.05.1 source>: defconfig loads, savedefconfig round-trips,
#    check-package passes (skipped without BR: Buildroot's source is not vendored here)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
b=$top/buildroot
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "test-buildroot: PASS $1"; }
no() { fail=$((fail + 1)); echo "test-buildroot: FAIL $1"; }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else no "$what"; fi; }
def=$b/configs/zennet_x86_64_defconfig
ov=$b/board/zennet/rootfs-overlay

for f in external.desc Config.in external.mk configs/zennet_x86_64_defconfig \
  package/zennet-agent/Config.in package/zennet-agent/zennet-agent.mk \
  board/zennet/post-build.sh board/zennet/post-image.sh board/zennet/genimage.cfg \
  board/zennet/linux-boot.fragment build.sh README.md; do
  check "present: buildroot/$f" test -s "$b/$f"
done
check "external.desc names ZENNET" grep -qx 'name: ZENNET' "$b/external.desc"
check "Config.in sources the package" grep -q 'package/zennet-agent/Config.in' "$b/Config.in"
check "external.mk includes package makefiles" grep -q 'package/\*/\*.mk' "$b/external.mk"
check "defconfig enables zennet-agent" grep -qx 'BR2_PACKAGE_ZENNET_AGENT=y' "$def"
check "defconfig uses kernel-config/zennet.fragment" grep -q '^BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES=.*/\.\./kernel-config/zennet.fragment' "$def"
check "defconfig uses the shared overlay" grep -qx 'BR2_ROOTFS_OVERLAY="$(BR2_EXTERNAL_ZENNET_PATH)/board/zennet/rootfs-overlay"' "$def"
check "image/build.sh uses the same overlay" grep -q '^OVERLAY=$top/buildroot/board/zennet/rootfs-overlay$' "$top/image/build.sh"
check "one overlay only (no copy elsewhere)" test "$(find "$top" -path "$top/out" -prune -o -path "$top/target" -prune -o -name inittab -print | wc -l)" -eq 1
check "cargo package" grep -q '^$(eval $(cargo-package))' "$b/package/zennet-agent/zennet-agent.mk"
check "local source vendored by a hook" grep -q 'cargo vendor' "$b/package/zennet-agent/zennet-agent.mk"
check "genimage offset = 1M" grep -q 'offset = 1M' "$b/board/zennet/genimage.cfg"
check "post-image makes the OVA with image/convert.sh" grep -q 'image/convert.sh' "$b/board/zennet/post-image.sh"
check "pinned to 2026.05.1" grep -q 'want=2026.05.1' "$b/build.sh"
check "shellcheck board scripts" shellcheck -S warning "$b"/board/zennet/*.sh "$b/build.sh"
check "shellcheck overlay scripts" shellcheck -S warning -s sh "$ov/init" "$ov"/etc/init.d/* "$ov"/usr/sbin/* "$ov/usr/share/udhcpc/default.script"

if [ -n "${BR:-}" ] && [ -f "$BR/Makefile" ]; then
  o=$(mktemp -d)
  check "buildroot: defconfig loads" make -C "$BR" O="$o" BR2_EXTERNAL="$b" zennet_x86_64_defconfig
  make -C "$BR" O="$o" savedefconfig BR2_DEFCONFIG="$o/saved" >/dev/null 2>&1 || true
  check "buildroot: savedefconfig round-trips" diff <(grep -v '^#' "$def" | grep .) <(grep -v '^#' "$o/saved" | grep .)
  check "buildroot: check-package" /usr/bin/python3 "$BR/utils/check-package" --br2-external \
    "$b"/package/zennet-agent/* "$b/Config.in" "$b/external.mk" "$b/external.desc" "$def"
  rm -rf "$o"
else
  skip=$((skip + 1))
  echo "test-buildroot: SKIP Buildroot's own checks (set BR=<buildroot-2026.05.1 source>)"
fi
echo "test-buildroot: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]

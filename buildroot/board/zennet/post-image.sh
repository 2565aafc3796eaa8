#!/usr/bin/env bash
# Buildroot post-image: boot partition tree, genimage (GPT disk), syslinux for BIOS, then the
# same conversions as the offline image (image/convert.sh: qcow2, VMDK, OVA, xz, .sha256).
# Environment from Buildroot: BINARIES_DIR, BUILD_DIR, HOST_DIR, BR2_EXTERNAL_ZENNET_PATH.
set -euo pipefail
board=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$board/../../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
bin=$BINARIES_DIR

# Boot partition: the bzImage carries the initramfs and command line (EFI stub for UEFI).
esp=$bin/esp
rm -rf "$esp"; mkdir -p "$esp/EFI/BOOT" "$esp/zennet" "$esp/syslinux"
cp "$bin/bzImage" "$esp/EFI/BOOT/BOOTX64.EFI"
cp "$bin/bzImage" "$esp/zennet/vmlinuz"
printf 'DEFAULT zennet\nPROMPT 0\nTIMEOUT 0\nLABEL zennet\n  LINUX /zennet/vmlinuz\n' > "$esp/syslinux/syslinux.cfg"
cp "$bin/syslinux/ldlinux.c32" "$esp/syslinux/" 2>/dev/null || true
cp "$board/rootfs-overlay/etc/zennet/zennet.toml" "$esp/zennet.toml"

support/scripts/genimage.sh -c "$board/genimage.cfg"

# syslinux's installer (mtools based) writes ldlinux.sys into the FAT at 1 MiB.
installer=$HOST_DIR/bin/syslinux
[ -x "$installer" ] || installer=$(command -v syslinux || true)
[ -n "$installer" ] || { echo "post-image: no syslinux installer (apt-get install syslinux)" >&2; exit 1; }
"$installer" --offset $((1024 * 1024)) --install --directory /syslinux "$bin/zennet-os.img"
mbr=$bin/syslinux/gptmbr.bin
[ -f "$mbr" ] || mbr=$bin/gptmbr.bin
dd if="$mbr" of="$bin/zennet-os.img" bs=440 count=1 conv=notrunc status=none

if command -v qemu-img >/dev/null; then
  "$top/image/convert.sh" "$bin/zennet-os.img" "$version"
else
  echo "post-image: qemu-img not found on the host: only zennet-os.img was made" >&2
fi

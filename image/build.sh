#!/usr/bin/env bash
# Assembles zennet-os offline from Debian parts (see image/README.md):
# Debian's amd64 kernel with only the needed modules, busybox-static, the static agent,
# dbus-daemon, stress-ng, nft and e2fsprogs/sfdisk with their shared libraries, and the
# rootfs overlay shared with the Buildroot tree. Everything runs from an initramfs; the GPT
# disk holds a FAT boot partition (systemd-boot for UEFI, syslinux for BIOS, zennet.toml)
# and an ext4 data partition for the agent's state. No loop devices, no root mounts.
#
# Usage: image/build.sh   (environment: AGENT, OUT, VERSION, SOURCE_DATE_EPOCH, KERNEL_PKG)
# Outputs in $OUT: zennet-os.{img,img.xz,qcow2,vmdk,ova} each with a .sha256 beside it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
OUT=${OUT:-$top/out}
AGENT=${AGENT:-$top/target/static/x86_64-unknown-linux-gnu/release/zennet-agent}
VERSION=${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -n1)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH
OVERLAY=$top/buildroot/board/zennet/rootfs-overlay
CACHE=${CACHE:-$OUT/cache}
WORK=$OUT/work
ESP_MB=${ESP_MB:-64}
DATA_MB=${DATA_MB:-32}
# cryptomgr.notests and initcall_blacklist=crypto_kdf108_init skip crypto self-tests
# (sanity checks only; the KDF one alone takes 2 s under TCG).
CMDLINE=${CMDLINE:-console=tty1 console=ttyS0,115200n8 quiet panic=10 cryptomgr.notests initcall_blacklist=crypto_kdf108_init}
export LC_ALL=C TZ=UTC MTOOLS_SKIP_CHECK=1

step() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }
# A UUID derived from the version and a name, so every build of one version agrees.
uuid_for() {
  local h
  h=$(printf 'zennet-os:%s:%s' "$VERSION" "$1" | sha256sum | cut -c1-32)
  printf '%s-%s-4%s-8%s-%s\n' "${h:0:8}" "${h:8:4}" "${h:13:3}" "${h:17:3}" "${h:20:12}"
}
hex8_for() { printf 'zennet-os:%s:%s' "$VERSION" "$1" | sha256sum | cut -c1-8; }

[ -x "$AGENT" ] || die "no static agent at $AGENT (run 'make image-agent')"
file -b "$AGENT" 2>/dev/null | grep -q 'dynamically linked' && die "$AGENT is not static"
mkdir -p "$CACHE" "$WORK" "$OUT"

# ---- Debian's kernel: downloaded as a .deb by name, extracted, never installed.
if [ -z "${KERNEL_PKG:-}" ]; then
  resolve() { apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1; }
  KERNEL_PKG=$(resolve)
  if [ -z "$KERNEL_PKG" ]; then apt-get update -qq >/dev/null 2>&1 || true; KERNEL_PKG=$(resolve); fi
  [ -n "$KERNEL_PKG" ] || die "cannot resolve linux-image-amd64 (apt-get update?)"
fi
kdeb=$(find "$CACHE" -maxdepth 1 -name "${KERNEL_PKG}_*.deb" | sort | tail -n1)
if [ -z "$kdeb" ]; then
  step "downloading $KERNEL_PKG"
  (cd "$CACHE" && apt-get download -q "$KERNEL_PKG" >/dev/null 2>&1) || die "apt-get download $KERNEL_PKG"
  kdeb=$(find "$CACHE" -maxdepth 1 -name "${KERNEL_PKG}_*.deb" | sort | tail -n1)
fi
kroot=$CACHE/kernel
if [ ! -f "$kroot/.from" ] || [ "$(cat "$kroot/.from")" != "$(basename "$kdeb")" ]; then
  step "extracting $(basename "$kdeb")"
  rm -rf "$kroot"; mkdir -p "$kroot"
  dpkg-deb -x "$kdeb" "$kroot"
  basename "$kdeb" > "$kroot/.from"
fi
KVER=$(basename "$(find "$kroot/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
[ -f "$kroot/lib/modules/$KVER/modules.dep" ] || depmod -b "$kroot" "$KVER"
"$top/kernel-config/check.sh" "$kroot/boot/config-$KVER" >/dev/null ||
  die "Debian's kernel lacks an option of kernel-config/zennet.fragment"

# ---- Root filesystem (the initramfs).
rootfs=$WORK/rootfs
rm -rf "$rootfs"; mkdir -p "$rootfs"
step "rootfs: busybox, overlay, agent, tools"
for d in bin sbin usr/bin usr/sbin etc proc sys dev run tmp root boot var/lib/zennet var/log; do
  mkdir -p "$rootfs/$d"
done
chmod 1777 "$rootfs/tmp"; chmod 700 "$rootfs/root"
cp /bin/busybox "$rootfs/bin/busybox"
while read -r applet; do
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done < <(/bin/busybox --list-full | sort)
mknod -m 600 "$rootfs/dev/console" c 5 1
mknod -m 666 "$rootfs/dev/null" c 1 3
cp -a "$OVERLAY/." "$rootfs/"
cat > "$rootfs/etc/os-release" <<OSR
NAME="zennet-os"
ID=zennet-os
VERSION_ID=$VERSION
PRETTY_NAME="zennet-os $VERSION"
BUILD_ID=debian-$KVER
OSR
install -m 755 "$AGENT" "$rootfs/usr/bin/zennet-agent"
strip --strip-all "$rootfs/usr/bin/zennet-agent"

# Dynamically linked tools with the libraries ldd resolves (same paths as on Debian).
copy_with_libs() { # SRC DEST-in-rootfs
  install -D -m 755 "$1" "$rootfs$2"
  ldd "$1" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | while read -r lib; do
    [ -e "$rootfs$lib" ] || install -D -m 755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}
copy_with_libs /usr/bin/stress-ng /usr/bin/stress-ng
copy_with_libs /usr/sbin/nft /usr/sbin/nft
# The agent's network needs iproute2's ip (busybox's lacks -batch and netns attach).
rm -f "$rootfs/sbin/ip" "$rootfs/bin/ip"
copy_with_libs /bin/ip /sbin/ip
copy_with_libs /usr/bin/dbus-daemon /usr/bin/dbus-daemon
for t in sfdisk mke2fs e2fsck resize2fs; do copy_with_libs "/usr/sbin/$t" "/usr/sbin/$t"; done
find "$rootfs/lib" "$rootfs/lib64" -type f -name '*.so*' -exec strip --strip-unneeded {} + 2>/dev/null || true
mkdir -p "$rootfs/usr/share/dbus-1" "$rootfs/etc/dbus-1/system.d"
cp /usr/share/dbus-1/system.conf "$rootfs/usr/share/dbus-1/system.conf"

# Only the modules /etc/zennet/modules names, with their dependencies.
step "rootfs: kernel modules for $KVER"
mdir=lib/modules/$KVER
mkdir -p "$rootfs/$mdir"
cp "$kroot/$mdir/modules.order" "$kroot/$mdir/modules.builtin" "$rootfs/$mdir/"
[ -f "$kroot/$mdir/modules.builtin.modinfo" ] && cp "$kroot/$mdir/modules.builtin.modinfo" "$rootfs/$mdir/"
grep -v -e '^#' -e '^$' -e '^\[' "$OVERLAY/etc/zennet/modules" | while read -r m; do
  modprobe -d "$kroot" -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'
done | sort -u | while read -r ko; do
  rel=${ko#"$kroot"/}
  install -D -m 644 "$ko" "$rootfs/$rel"
  # Drops the appended signature: verifying ~30 RSA signatures costs seconds under TCG,
  # and the chain is unsigned anyway (systemd-boot, syslinux: Secure Boot must be off).
  strip --strip-debug "$rootfs/$rel"
done
depmod -b "$rootfs" "$KVER"
[ -s "$rootfs/$mdir/modules.dep" ] || die "no modules selected"

# Reproducible cpio: fixed mtimes, sorted names, root owner, no inode numbers.
step "initramfs"
find "$rootfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$rootfs" && find . -print0 | sort -z | cpio --quiet --null -o -H newc --reproducible -R 0:0) |
  zstd -q -12 -T1 > "$WORK/initrd.img"
cp "$kroot/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
echo "$CMDLINE" > "$WORK/cmdline"

# ---- FAT boot partition: systemd-boot (UEFI), syslinux (BIOS), kernel, initrd, zennet.toml.
step "boot partition"
esp=$WORK/esp
rm -rf "$esp"; mkdir -p "$esp/EFI/BOOT" "$esp/loader/entries" "$esp/zennet" "$esp/syslinux"
cp /usr/lib/systemd/boot/efi/systemd-bootx64.efi "$esp/EFI/BOOT/BOOTX64.EFI"
printf 'default zennet.conf\ntimeout 0\neditor yes\n' > "$esp/loader/loader.conf"
printf 'title zennet-os %s\nlinux /zennet/vmlinuz\ninitrd /zennet/initrd.img\noptions %s\n' \
  "$VERSION" "$CMDLINE" > "$esp/loader/entries/zennet.conf"
printf 'DEFAULT zennet\nPROMPT 0\nTIMEOUT 0\nLABEL zennet\n  LINUX /zennet/vmlinuz\n  INITRD /zennet/initrd.img\n  APPEND %s\n' \
  "$CMDLINE" > "$esp/syslinux/syslinux.cfg"
cp "$WORK/vmlinuz" "$WORK/initrd.img" "$esp/zennet/"
cp "$OVERLAY/etc/zennet/zennet.toml" "$esp/zennet.toml"
find "$esp" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$WORK/esp.img"
mkfs.vfat -C -n ZENNET-BOOT -i "$(hex8_for esp-volume-id)" --invariant "$WORK/esp.img" $((ESP_MB * 1024)) >/dev/null
for d in EFI EFI/BOOT loader loader/entries zennet syslinux; do mmd -i "$WORK/esp.img" "::/$d"; done
(cd "$esp" && find . -type f | sort | while read -r f; do mcopy -m -i "$WORK/esp.img" "$f" "::/${f#./}"; done)
syslinux --install --directory /syslinux "$WORK/esp.img"

# ---- ext4 data partition, labelled for the agent's state (grown to the disk at first boot).
step "data partition"
rm -f "$WORK/data.img"; mkdir -p "$WORK/data-empty"
touch -d "@$SOURCE_DATE_EPOCH" "$WORK/data-empty"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -F -t ext4 -L zennet-data \
  -U "$(uuid_for data-fs)" -E "hash_seed=$(uuid_for data-hash),root_owner=0:0" \
  -d "$WORK/data-empty" "$WORK/data.img" "${DATA_MB}M"

# ---- GPT disk: protective MBR with syslinux's gptmbr.bin, legacy-bootable ESP, data.
step "disk image"
img=$OUT/zennet-os.img
esp_start=2048 esp_size=$((ESP_MB * 2048))
data_start=$((esp_start + esp_size)) data_size=$((DATA_MB * 2048))
total=$(( (data_start + data_size + 2048) * 512 ))
rm -f "$img"; truncate -s "$total" "$img"
sfdisk -q --no-reread --no-tell-kernel "$img" >/dev/null <<SFD
label: gpt
label-id: $(uuid_for disk)
first-lba: 2048
unit: sectors
start=$esp_start, size=$esp_size, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$(uuid_for part-boot), name="zennet-boot", attrs="LegacyBIOSBootable"
start=$data_start, size=$data_size, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(uuid_for part-data), name="zennet-data"
SFD
dd if="$WORK/esp.img" of="$img" bs=1M seek=1 conv=notrunc,fsync status=none
dd if="$WORK/data.img" of="$img" bs=512 seek="$data_start" conv=notrunc status=none
dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
touch -d "@$SOURCE_DATE_EPOCH" "$img"

# The inputs that matter for a byte-identical rebuild (tests/image/test-image.sh uses them).
printf 'SOURCE_DATE_EPOCH=%s\nVERSION=%s\nKERNEL_PKG=%s\nAGENT=%s\n' \
  "$SOURCE_DATE_EPOCH" "$VERSION" "$KERNEL_PKG" "$AGENT" > "$WORK/build-env"

# ---- Converted outputs.
step "qcow2, vmdk, ova, xz"
"$here/convert.sh" "$img" "$VERSION"
for f in "$OUT"/zennet-os.*; do case $f in *.sha256) ;; *) step "built $f ($(du -m "$f" | cut -f1) MiB)" ;; esac; done

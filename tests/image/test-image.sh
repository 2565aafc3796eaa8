#!/usr/bin/env bash
# `make test-image`: checks the built zennet-os outputs (run `make image` first).
#  1. kernel-config/zennet.fragment against Debian's kernel config
#  2. every output's .sha256; the OVA's OVF (xmllint and check-ova.py), VMDK size, manifest
#  3. boots under QEMU (TCG here): .img on UEFI (e1000) and BIOS (virtio-net), the VMDK taken
#     out of the .ova on BIOS (e1000, AHCI as VirtualBox), and a copy of the .qcow2 grown by
#     128 MiB: boots to ready, writes a file on the data partition, powers off, boots again
#     and reads it back (the data partition also grows to the disk at first boot)
#     and an initramfs boot with zennet.os.hostname= on the kernel command line, and a disk
#     with a blank data partition (ext4 created at first boot) 64 MiB larger than the image
#  4. shellcheck of the image, qemu and test scripts
#  5. reproducible: a second build from the recorded inputs is byte-identical
# Every QEMU process a test starts is killed at the end, even on failure.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/out
t=$out/test-image
mkdir -p "$t"
rm -f "$t"/*.pid "$t"/*.log
pass=0 fail=0
cleanup() {
  local f pid
  for f in "$t"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ]; then
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}
trap cleanup EXIT INT TERM
run() { # NAME COMMAND...
  local name=$1; shift
  local start=$SECONDS
  if "$@"; then
    pass=$((pass + 1)); echo "test-image: PASS $name ($((SECONDS - start))s)"
  else
    fail=$((fail + 1)); echo "test-image: FAIL $name ($((SECONDS - start))s)"
  fi
}

run kernel-config "$top/kernel-config/check.sh" "$(find "$out/cache/kernel/boot" -name 'config-*' | head -n1)"
run checksums bash -c "cd '$out' && sha256sum --quiet -c zennet-os.img.sha256 zennet-os.img.xz.sha256 zennet-os.qcow2.sha256 zennet-os.vmdk.sha256 zennet-os.ova.sha256"
rm -rf "$t/ova"; mkdir -p "$t/ova"
tar -C "$t/ova" -xf "$out/zennet-os.ova"
run ovf-xmllint xmllint --noout "$t/ova/zennet-os.ovf"
run ova-contents python3 "$top/tests/image/check-ova.py" "$out/zennet-os.ova" "$out/zennet-os.img"
run img-xz bash -c "xz -dc '$out/zennet-os.img.xz' | cmp -s - '$out/zennet-os.img'"
run gpt-layout bash -c "sfdisk -d '$out/zennet-os.img' | grep -q 'name=\"zennet-boot\"' && sfdisk -d '$out/zennet-os.img' | grep -q 'name=\"zennet-data\"'"
run shellcheck shellcheck -S warning "$top/image/build.sh" "$top/image/convert.sh" "$top/qemu/run" \
  "$top/kernel-config/check.sh" "$top"/tests/image/*.sh

# Reproducible: the same inputs (recorded by build.sh) rebuilt elsewhere give the same bytes.
repro() {
  local env=$out/work/build-env f
  [ -f "$env" ] || return 1
  rm -rf "$t/repro"
  # shellcheck disable=SC1090 # written by image/build.sh
  (set -a; . "$env"; OUT=$t/repro CACHE=$out/cache "$top/image/build.sh") >"$t/repro.log" 2>&1 || return 1
  for f in img img.xz qcow2 vmdk ova; do
    cmp -s "$out/zennet-os.$f" "$t/repro/zennet-os.$f" || { echo "differs: zennet-os.$f"; return 1; }
  done
  rm -rf "$t/repro"
}
run reproducible repro

vm=$top/tests/image/vm.py
run boot-img-uefi python3 "$vm" boot img-uefi --image "$out/zennet-os.img" --uefi --nic e1000 --snapshot
run boot-img-bios python3 "$vm" boot img-bios --image "$out/zennet-os.img" --bios --nic virtio --snapshot
run boot-ova-vmdk python3 "$vm" boot ova-vmdk --image "$t/ova/zennet-os-disk1.vmdk" --bios --nic e1000 --snapshot
run cmdline-override python3 "$vm" cmdline cmdline "$out/zennet-os.img"
run containers-cgroup-v2 python3 "$vm" containers containers "$out/zennet-os.img"
# A disk whose data partition is blank and which is 64 MiB larger: ext4 made, then grown.
blank() {
  cp "$out/zennet-os.img" "$t/blank.img"
  dd if=/dev/zero of="$t/blank.img" bs=1M seek=65 count=2 conv=notrunc status=none
  truncate -s +64M "$t/blank.img"
  python3 "$vm" boot blank --image "$t/blank.img" --bios --nic virtio &&
    grep -q 'is blank: creating ext4' "$t/blank.log" &&
    grep -q 'growing partition' "$t/blank.log"
}
run blank-data-partition blank
rm -f "$t/blank.img"
cp "$out/zennet-os.qcow2" "$t/persist.qcow2"
qemu-img resize -q "$t/persist.qcow2" +128M
run qcow2-persist python3 "$vm" persist qcow2 "$t/persist.qcow2"
rm -rf "$t/ova" "$t/persist.qcow2"

echo "test-image: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

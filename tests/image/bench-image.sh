#!/usr/bin/env bash
# `make bench-image`: output sizes and boot-to-ready time (median of 3 boots).
#   image size_mb img_xz=<x> ova=<y>
#   image boot_to_ready_s tcg=<x> kvm=<y|n/a>          (.img on SeaBIOS, e1000)
#   image boot_to_ready_s firmware=uefi tcg=<x>        (.img on OVMF, e1000)
# Boot to ready: from QEMU's start to the agent's "zennet-agent ready" line on the serial
# console (see tests/image/vm.py for the fallback while the agent is a stub).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/out
vm=$top/tests/image/vm.py
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "image size_mb img_xz=$(mb "$out/zennet-os.img.xz") ova=$(mb "$out/zennet-os.ova")"
median() {
  local log=$out/test-image/bench.txt
  mkdir -p "$out/test-image"
  python3 "$vm" bench 3 --image "$out/zennet-os.img" --snapshot --nic e1000 "$@" > "$log"
  cat "$log" >&2
  sed -n 's/^median //p' "$log"
}
tcg=$(QEMU_ACCEL=tcg median --bios)
kvm=n/a
if [ -r /dev/kvm ] && grep -qw -E 'vmx|svm' /proc/cpuinfo; then kvm=$(QEMU_ACCEL=kvm median --bios); fi
echo "image boot_to_ready_s tcg=$tcg kvm=$kvm"
echo "image boot_to_ready_s firmware=uefi tcg=$(QEMU_ACCEL=tcg median --uefi)"

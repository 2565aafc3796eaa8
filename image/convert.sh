#!/usr/bin/env bash
# Converts the raw GPT image into zennet-os.qcow2, zennet-os.vmdk (streamOptimized),
# zennet-os.ova (OVF 1.0: 2 vCPU, 2 GiB, AHCI disk, e1000 on NAT, SHA256 manifest) and
# zennet-os.img.xz, each with a .sha256 beside it. Reproducible for the same input.
# Usage: image/convert.sh OUT/zennet-os.img VERSION
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
img=$1 version=$2
out=$(dirname "$img")
: "${SOURCE_DATE_EPOCH:?}"
qcow2=$out/zennet-os.qcow2 vmdk=$out/zennet-os.vmdk ova=$out/zennet-os.ova

rm -f "$qcow2" "$vmdk"
qemu-img convert -m 1 -f raw -O qcow2 "$img" "$qcow2"
qemu-img convert -m 1 -f raw -O vmdk -o subformat=streamOptimized "$img" "$vmdk"
# QEMU writes a random content ID into the VMDK descriptor: make it depend on the version.
cid=$(printf 'zennet-os:%s:vmdk-cid' "$version" | sha256sum | cut -c1-8)
python3 - "$vmdk" "$cid" <<'PY'
import re, sys
path, cid = sys.argv[1], sys.argv[2].encode()
with open(path, "r+b") as f:
    head = f.read(65536)
    m = re.search(rb"\nCID=([0-9a-f]{8})\n", head)
    if not m:
        sys.exit("vmdk: no CID in descriptor")
    f.seek(m.start(1)); f.write(cid)
PY

# OVA: the OVF first, then the disk, then the manifest (uncompressed ustar, fixed metadata).
stage=$out/work/ova
rm -rf "$stage"; mkdir -p "$stage"
cp "$vmdk" "$stage/zennet-os-disk1.vmdk"
vmdk_size=$(stat -c %s "$stage/zennet-os-disk1.vmdk")
capacity=$(stat -c %s "$img")
sed -e "s/@VERSION@/$version/g" -e "s/@VMDK_SIZE@/$vmdk_size/g" -e "s/@CAPACITY@/$capacity/g" \
  "$here/zennet-os.ovf.in" > "$stage/zennet-os.ovf"
(cd "$stage" && for f in zennet-os.ovf zennet-os-disk1.vmdk; do
  echo "SHA256($f)= $(sha256sum "$f" | cut -d' ' -f1)"
done) > "$stage/zennet-os.mf"
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar -C "$stage" --format=ustar --owner=0 --group=0 --numeric-owner --mode=0644 \
  --mtime="@$SOURCE_DATE_EPOCH" -cf "$ova" zennet-os.ovf zennet-os-disk1.vmdk zennet-os.mf
rm -rf "$stage"

xz -T1 -6 -c "$img" > "$img.xz"
for f in "$img" "$img.xz" "$qcow2" "$vmdk" "$ova"; do
  touch -d "@$SOURCE_DATE_EPOCH" "$f"
  (cd "$out" && sha256sum "$(basename "$f")") > "$f.sha256"
done

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
import re, struct, sys
path, cid = sys.argv[1], sys.argv[2]
with open(path, "r+b") as f:
    head = f.read(512)
    if head[:4] != b"KDMV":
        sys.exit("vmdk: not a sparse VMDK")
    off, size = struct.unpack_from("<QQ", head, 28)  # descriptor offset and size, sectors
    f.seek(off * 512); region = f.read(size * 512)
    text = region.split(b"\0", 1)[0].decode()
    new, n = re.subn(r"(?m)^CID=[0-9a-f]+$", "CID=" + cid, text)
    if n != 1 or len(new) >= len(region):
        sys.exit("vmdk: no CID in the descriptor")
    f.seek(off * 512); f.write(new.encode().ljust(len(region), b"\0"))
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

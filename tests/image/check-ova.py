#!/usr/bin/env python3
"""Checks zennet-os.ova: the OVF comes first and parses, references the VMDK with its exact
size and the raw disk's capacity, asks for 2 vCPU, 2 GiB, an AHCI controller and an e1000 NIC
on NAT, and the manifest's SHA256 lines match the members. Usage: check-ova.py OVA IMG"""
import hashlib, os, re, sys, tarfile
import xml.etree.ElementTree as ET

ova, img = sys.argv[1], sys.argv[2]
NS = {"ovf": "http://schemas.dmtf.org/ovf/envelope/1",
      "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"}
O = "{%s}" % NS["ovf"]
fails = []
def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        fails.append(what)

with tarfile.open(ova) as t:
    members = t.getmembers()
    names = [m.name for m in members]
    check(names[0].endswith(".ovf"), f"OVF is the first member ({names})")
    data = {m.name: t.extractfile(m).read() for m in members}
ovf_name = names[0]
root = ET.fromstring(data[ovf_name])
files = root.findall("ovf:References/ovf:File", NS)
check(len(files) == 1, "one file referenced")
href, size = files[0].get(O + "href"), int(files[0].get(O + "size"))
check(href in data and href.endswith(".vmdk"), f"referenced VMDK {href} is in the OVA")
check(len(data.get(href, b"")) == size, f"VMDK size {size} matches the OVF")
check(data.get(href, b"")[:4] == b"KDMV", "VMDK has the sparse magic")
check(b"createType=\"streamOptimized\"" in data.get(href, b"")[:4096], "VMDK is streamOptimized")
disk = root.find("ovf:DiskSection/ovf:Disk", NS)
check(int(disk.get(O + "capacity")) == os.path.getsize(img), "disk capacity equals the raw image size")
check(disk.get(O + "format").endswith("#streamOptimized"), "disk format is streamOptimized")
items = root.findall(".//ovf:VirtualHardwareSection/ovf:Item", NS)
def item(rtype):
    return [i for i in items if i.findtext("rasd:ResourceType", namespaces=NS) == rtype]
cpu, mem, sata, nic = item("3"), item("4"), item("20"), item("10")
check(cpu and cpu[0].findtext("rasd:VirtualQuantity", namespaces=NS) == "2", "2 vCPU")
check(mem and mem[0].findtext("rasd:VirtualQuantity", namespaces=NS) == "2048"
      and mem[0].findtext("rasd:AllocationUnits", namespaces=NS) == "MegaBytes", "2 GiB memory")
check(sata and sata[0].findtext("rasd:ResourceSubType", namespaces=NS) == "AHCI", "AHCI controller")
check(nic and nic[0].findtext("rasd:ResourceSubType", namespaces=NS) == "E1000"
      and nic[0].findtext("rasd:Connection", namespaces=NS) == "NAT", "e1000 NIC on NAT")
disk_items = item("17")
check(disk_items and disk_items[0].findtext("rasd:Parent", namespaces=NS)
      == sata[0].findtext("rasd:InstanceID", namespaces=NS), "disk attached to the AHCI controller")
mf = [n for n in names if n.endswith(".mf")]
check(len(mf) == 1, "manifest present")
lines = data[mf[0]].decode().split("\n") if mf else []
seen = set()
for line in filter(None, lines):
    m = re.match(r"^SHA256\((.+)\)= ([0-9a-f]{64})$", line)
    check(bool(m), f"manifest line well formed: {line[:60]}")
    if m:
        seen.add(m.group(1))
        check(hashlib.sha256(data[m.group(1)]).hexdigest() == m.group(2), f"SHA256 of {m.group(1)} matches")
check(seen == set(names) - set(mf), "manifest covers every other member")
sys.exit(1 if fails else 0)

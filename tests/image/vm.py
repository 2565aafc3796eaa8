#!/usr/bin/env python3
"""Drives zennet-os in QEMU through its serial console (qemu/run), for tests and benchmarks.

Usage:
  vm.py boot NAME [qemu/run args...]      boot, check the facts line and readiness
  vm.py persist NAME DISK                 write a file on the data partition, power off,
                                          boot the same disk again, read the file back
  vm.py cmdline NAME DISK                 zennet.os.hostname= on the kernel command line wins
  vm.py bench N [qemu/run args...]        median seconds from QEMU start to ready

Readiness: a serial line starting with "zennet-agent ready" (the agent's contract). Fallback,
only while the agent in the image is still the stub: if the image's agent binary does not
contain that string at all, "zennet-os: agent started" is accepted instead and the fallback
is announced on stdout as "FALLBACK:". Every QEMU process is killed on exit (its session).
"""
import os, re, select, signal, statistics, subprocess, sys, time, secrets

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOGDIR = os.path.join(TOP, "out", "test-image")
AGENT = os.path.join(TOP, "out", "work", "rootfs", "usr", "bin", "zennet-agent")
READY = "zennet-agent ready"
BOOT_TIMEOUT = float(os.environ.get("ZENNET_BOOT_TIMEOUT", "240"))
LIVE = []
ANSI = re.compile(r"\x1b(\[[0-9;=?]*[A-Za-z]|[()][A-Z0-9])")


def ready_pattern():
    try:
        with open(AGENT, "rb") as f:
            has = READY.encode() in f.read()
    except OSError:
        has = False
    if has:
        return re.compile(r"^" + re.escape(READY), re.M), False
    return re.compile(r"^zennet-os: agent started", re.M), True


class Vm:
    def __init__(self, name, args):
        os.makedirs(LOGDIR, exist_ok=True)
        self.name = name
        self.log = open(os.path.join(LOGDIR, name + ".log"), "wb")
        self.buf = ""
        self.raw = b""
        self.pos = 0
        self.t0 = time.monotonic()
        pidfile = os.path.join(LOGDIR, name + ".pid")
        cmd = [os.path.join(TOP, "qemu", "run"), "--fwd", "none", "--pidfile", pidfile] + list(args)
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        LIVE.append(self)

    def expect(self, pattern, timeout):
        """Waits for a regex in the console output after the last match; returns the match."""
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: timeout waiting for {rx.pattern!r}")
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 1.0))
            if r:
                data = os.read(self.p.stdout.fileno(), 65536)
                if not data:
                    raise AssertionError(f"{self.name}: QEMU exited waiting for {rx.pattern!r}")
                self.log.write(data); self.log.flush()
                self.raw += data
                # Firmware (OVMF) writes terminal escapes without a newline before Linux's
                # output, possibly split across reads: clean the whole console text.
                self.buf = ANSI.sub("", self.raw.decode("utf-8", "replace").replace("\r", ""))

    def send(self, text):
        self.p.stdin.write(text.encode()); self.p.stdin.flush()

    def wait_exit(self, timeout):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name}: did not power off in {timeout}s")
        self.kill()

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait()
        if self in LIVE:
            LIVE.remove(self)
        self.log.close()


def kill_all(*_):
    for vm in list(LIVE):
        vm.kill()
    if _:
        sys.exit(1)


def facts(vm):
    m = vm.expect(r"^zennet-os: boot ok (.*)\n", BOOT_TIMEOUT)
    kv = dict(w.split("=", 1) for w in m.group(1).split() if "=" in w)
    errors = []
    if kv.get("cgroup2") != "on":
        errors.append("cgroup2 not mounted")
    ctl = set(kv.get("controllers", "").split(","))
    for c in ("cpu", "memory", "pids", "io"):
        if c not in ctl:
            errors.append(f"cgroup2 controller {c} missing")
    if kv.get("data") != "mounted":
        errors.append(f"data partition not mounted ({kv.get('data')})")
    if not re.match(r"^10\.0\.2\.\d+$", kv.get("net", "")):
        errors.append(f"no DHCP address ({kv.get('net')})")
    if errors:
        raise AssertionError(f"{vm.name}: " + "; ".join(errors))
    return kv


def ready(vm):
    rx, fallback = ready_pattern()
    vm.expect(rx, BOOT_TIMEOUT)
    if fallback:
        print(f"FALLBACK: {vm.name}: agent binary lacks '{READY}'; accepted 'agent started'")
    return time.monotonic() - vm.t0


def boot(name, args):
    vm = Vm(name, args)
    try:
        kv = facts(vm)
        s = ready(vm)
        print(f"ok: {name}: ready in {s:.1f}s net={kv['net']} data_mb={kv['data_mb']} "
              f"controllers={kv['controllers']}")
        return s
    finally:
        vm.kill()


def shell(vm, command, timeout=60):
    """Runs a command in the console shell (the status screen gives one on Enter)."""
    n = secrets.randbelow(10000) + 10000
    vm.send(f"{command}; echo DONE-$(({n}+1))\n")
    vm.expect(rf"^DONE-{n + 1}$", timeout)
    return vm.buf[:vm.pos]


def agent_address(vm, timeout):
    """The address on the agent's ready line, wherever it is in the console output."""
    # Not anchored: on a reboot it can follow the console shell's prompt on one line.
    # The whole address: up to the end of its line (a read may end mid-line).
    rx = re.compile(r"zennet-agent ready .*?address=(xen1[0-9a-z]+)[ \t]*\n")
    m = rx.search(vm.buf)
    if not m:
        saved, vm.pos = vm.pos, 0
        try:
            m = vm.expect(rx, timeout)
        finally:
            vm.pos = max(saved, vm.pos)
    return m.group(1)


def persist(name, disk):
    token = secrets.token_hex(8)
    vm = Vm(name + "-1", ["--image", disk, "--uefi"])
    try:
        kv = facts(vm)
        if kv.get("boots") != "1":
            raise AssertionError(f"{vm.name}: expected boots=1, got {kv.get('boots')}")
        ready(vm)
        address = agent_address(vm, 10)
        vm.expect(r"Press Enter for a shell\.", 60)
        vm.send("\n")
        shell(vm, f"echo persisted-{token} > /var/lib/zennet/persist-test; sync")
        vm.send("poweroff\n")
        vm.wait_exit(90)
    finally:
        vm.kill()
    vm = Vm(name + "-2", ["--image", disk, "--bios"])
    try:
        kv2 = facts(vm)
        if kv2.get("boots") != "2":
            raise AssertionError(f"{vm.name}: expected boots=2, got {kv2.get('boots')}")
        vm.expect(r"Press Enter for a shell\.", 60)
        vm.send("\n")
        out = shell(vm, "cat /var/lib/zennet/persist-test; test -f /var/lib/zennet/agent.log && echo agent-log-$((40+2))")
        if f"persisted-{token}" not in out:
            raise AssertionError(f"{vm.name}: file written before the reboot is gone")
        if "agent-log-42" not in out:
            raise AssertionError(f"{vm.name}: the agent's log file is not on the data partition")
        address2 = agent_address(vm, BOOT_TIMEOUT)
        if address2 != address:
            raise AssertionError(f"{vm.name}: the agent's identity changed over the reboot: {address} then {address2}")
        print(f"ok: {name}: file on the data partition and the agent's identity {address} survived a reboot, the agent logs there "
              f"(boots=2, data_mb={kv['data_mb']} then {kv2['data_mb']})")
        return kv, kv2
    finally:
        vm.kill()


def cmdline(name, disk):
    """zennet.S.K= kernel options override zennet.toml (initramfs boot, so -append works)."""
    vm = Vm(name, ["--initramfs", "--image", disk, "--bios", "--snapshot",
                   "--append", "zennet.os.hostname=zn-cmdline"])
    try:
        facts(vm)
        vm.expect(r"^==== zennet-os \S+ on zn-cmdline ====$", 60)
        vm.expect(r"Press Enter for a shell\.", 60)
        vm.send("\n")
        out = shell(vm, "cat /run/zennet/env; ls /sys/fs/cgroup/cgroup.subtree_control /boot/zennet.toml")
        for want in ("ZENNET_OS_HOSTNAME='zn-cmdline'", "ZENNET_CONFIG=/run/zennet/zennet.toml",
                     "/boot/zennet.toml"):
            if want not in out:
                raise AssertionError(f"{name}: missing {want!r} in the console output")
        print(f"ok: {name}: kernel command line override applied (hostname zn-cmdline)")
    finally:
        vm.kill()


def containers(name, disk):
    """The container engine on the appliance's pure cgroup v2: a 64 MiB container runs a
    command, sees its own memory.max, is metered and removed (beside the running agent)."""
    vm = Vm(name, ["--image", disk, "--bios", "--snapshot"])
    try:
        facts(vm)
        ready(vm)
        vm.expect(r"Press Enter for a shell\.", 60)
        vm.send("\n")
        out = shell(vm, "PATH=/usr/sbin:/usr/bin:/sbin:/bin zennet-agent demo --no-network --state-dir /tmp/zdemo 2>&1", timeout=180)
        for want in ("0 100000 65536", "wrote 4 MiB", "memory.max 67108864",
                     "io_write_bytes     4194304", "removed"):
            if want not in out:
                raise AssertionError(f"{name}: missing {want!r} in the console output")
        print(f"ok: {name}: container on cgroup v2 with memory.max 67108864, metered and removed")
    finally:
        vm.kill()


def main(argv):
    signal.signal(signal.SIGTERM, kill_all)
    signal.signal(signal.SIGINT, kill_all)
    try:
        if argv[0] == "boot":
            boot(argv[1], argv[2:])
        elif argv[0] == "cmdline":
            cmdline(argv[1], argv[2])
        elif argv[0] == "containers":
            containers(argv[1], argv[2])
        elif argv[0] == "persist":
            persist(argv[1], argv[2])
        elif argv[0] == "bench":
            times = [boot(f"bench-{i}", argv[2:]) for i in range(int(argv[1]))]
            print(f"median {statistics.median(times):.1f}")
        else:
            raise SystemExit(__doc__)
    except AssertionError as e:
        print(f"FAIL: {e} (console log in {LOGDIR})")
        return 1
    finally:
        kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

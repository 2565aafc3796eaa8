#!/bin/bash
# make bench-ssh: one devnet, one provider agent, `zennet rent -n 1` holding
# the tunnel, against Debian's sshd on loopback, with the same OpenSSH client.
#   ssh connect_ms_p50=<x> openssh_direct_ms_p50=<y>   (`ssh host true`, 21 runs each)
#   ssh scp_mib_s=<x> openssh_direct_mib_s=<y>         (a 256 MiB file, scp onto the container's
#                                                        disk vs onto this host's, median of 3)
# Needs root (the agent runs a real container; sshd). Cleans up every
# process, cgroup and file it makes.
set -euo pipefail
BIN=${BIN:-target/release}
work=$(mktemp -d /tmp/zennet-bench-ssh.XXXXXX)
chmod 755 "$work"
pids=()
user=zn-bench-$$
cleanup() {
  # The publisher first (it settles), then the agent, whose engine removes
  # its container's mounts and cgroups after the agent itself has exited.
  for p in $(printf '%s\n' "${pids[@]}" | tac); do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do grep -q "$work" /proc/mounts || break; sleep 0.1; done
  id "$user" >/dev/null 2>&1 && userdel "$user"
  for c in /sys/fs/cgroup/*/; do rmdir "$c/zennet-bs$$.zygote" "$c/zennet-bs$$" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

"$BIN/xencoind" --dev --rpc-addr 127.0.0.1:0 --data-dir "$work/chain" >"$work/chain.out" 2>"$work/chain.err" &
pids+=($!)
for _ in $(seq 100); do grep -q http:// "$work/chain.out" 2>/dev/null && break; sleep 0.1; done
rpc="http://$(grep -o 'http://[^ ]*' "$work/chain.out" | head -1 | sed 's|http://||')"
mapfile -t keys < <("$BIN/xencoind" dev-keys | awk 'NR > 1 { print $2 }')
(umask 077; echo "${keys[1]}" >"$work/publisher.key")
mkdir -p "$work/agent"
(umask 077; echo "${keys[2]}" >"$work/agent/identity.key")
"$BIN/zennet-agent" run --state-dir "$work/agent" --no-network --cgroup-parent "zennet-bs$$" --rpc "$rpc" \
  >"$work/agent.out" 2>"$work/agent.err" &
pids+=($!)
for _ in $(seq 200); do grep -q "zennet-agent ready" "$work/agent.out" 2>/dev/null && break; sleep 0.05; done
grep -q "market=on" "$work/agent.out" || { echo "bench-ssh: the agent did not start" >&2; cat "$work/agent.err" >&2; exit 1; }

mkdir -p "$work/home/.ssh"
ssh-keygen -q -t ed25519 -N '' -f "$work/home/.ssh/id_ed25519"
HOME="$work/home" "$BIN/zennet" rent --foreground --wallet "$work/publisher.key" --rpc "$rpc" --json -n 1 -m 256M --cpus 1 --disk 600M \
  --state-dir "$work/pub" >"$work/rent.out" 2>"$work/rent.err" &
pids+=($!)
for _ in $(seq 600); do grep -q '"event":"ready"' "$work/rent.out" 2>/dev/null && break; sleep 0.1; done
grep -q '"event":"ready"' "$work/rent.out" || { echo "bench-ssh: rent failed" >&2; cat "$work/rent.err" >&2; exit 1; }

# Debian's sshd on a free loopback port, its own host key, the publisher's key
# authorized for a user whose shell is /bin/sh (root's bash here sources a
# .bashrc costing ~0.4 s per session; the container's shell is busybox sh).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
useradd -M -d "$work/userhome" -s /bin/sh -p "*" "$user"  # "*": no password, not locked
ssh-keygen -q -t ed25519 -N '' -f "$work/sshd_host_key"
cp "$work/home/.ssh/id_ed25519.pub" "$work/authorized_keys"
chown "$user" "$work/authorized_keys"; chmod 600 "$work/authorized_keys"
mkdir -p /run/sshd "$work/userhome" "$work/recv"
chown "$user" "$work/userhome" "$work/recv"
cat >"$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$port
HostKey $work/sshd_host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
StrictModes no
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.err" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

cfg="$work/pub/ssh_config"
# The same client options for both (Debian's client turns GSSAPI on; neither server offers it).
opts=(-o GSSAPIAuthentication=no -o LogLevel=ERROR -o BatchMode=yes)
direct=(-i "$work/home/.ssh/id_ed25519" -o IdentitiesOnly=yes -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no "${opts[@]}")
p50() { # command... -> median ms of 21 runs
  local t=()
  for _ in $(seq 21); do
    local a b
    a=$(date +%s%N)
    "$@" >/dev/null
    b=$(date +%s%N)
    t+=($(((b - a) / 1000)))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n 11p | awk '{ printf "%.1f", $1 / 1000 }'
}
ours=$(p50 ssh -F "$cfg" "${opts[@]}" zn-1 true)
theirs=$(p50 ssh -p "$port" "${direct[@]}" "$user@127.0.0.1" true)
echo "ssh connect_ms_p50=$ours openssh_direct_ms_p50=$theirs"

dd if=/dev/urandom of="$work/big" bs=1M count=256 status=none
mib_s() { # command... -> median MiB/s of 3 copies of 256 MiB
  local r=()
  for _ in 1 2 3; do
    local a b
    a=$(date +%s%N)
    "$@" >/dev/null || { echo "bench-ssh: $* failed" >&2; exit 1; }
    b=$(date +%s%N)
    r+=("$(awk -v ns=$((b - a)) 'BEGIN { printf "%.1f", 256 / (ns / 1e9) }')")
  done
  printf '%s\n' "${r[@]}" | sort -n | sed -n 2p
}
ours=$(mib_s scp -q -F "$cfg" "${opts[@]}" "$work/big" zn-1:/root/big)
theirs=$(mib_s scp -q -P "$port" "${direct[@]}" "$work/big" "$user@127.0.0.1:$work/recv/big")
echo "ssh scp_mib_s=$ours openssh_direct_mib_s=$theirs"

#!/bin/bash
# make bench-publisher: a one-node devnet (1 s slots) and five provider agents
# on loopback; `zennet -n N -m 64M` (the daemon) from its start until every
# host answers `ssh -F ssh_config zn-i true`, for N = 1, 10, 50; then
# `zennet stop`. One line per figure:
#   publisher ready_s n=<N> <seconds>
#   publisher parallel_jobs_per_s n=4 <jobs/s>   (200 short jobs through GNU
#       parallel's sshloginfile on 4 containers of the Debian base, which has
#       the perl parallel's remote wrapper needs; DEBIAN_BASE names it)
# Needs root (the agents run real containers). Cleans up every process,
# cgroup and file it makes.
set -euo pipefail
BIN=${BIN:-target/release}
DEBIAN_BASE=${DEBIAN_BASE:-/var/tmp/zennet-bases/debian}
[ -x "$DEBIAN_BASE/usr/bin/perl" ] || { echo "bench-publisher: no Debian base at $DEBIAN_BASE (make it with: zennet-agent make-base debian)" >&2; exit 1; }
AGENTS=5
work=$(mktemp -d /tmp/zennet-bench-publisher.XXXXXX)
chmod 755 "$work"
agent_pids=()
chain_pid=
cleanup() {
  "$BIN/zennet" --wallet "$work/publisher.key" --state-dir "$work/pub" stop >/dev/null 2>&1 || true
  for p in "${agent_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  [ -n "$chain_pid" ] && { kill "$chain_pid" 2>/dev/null || true; wait "$chain_pid" 2>/dev/null || true; }
  for _ in $(seq 100); do grep -q "$work" /proc/mounts || break; sleep 0.1; done
  for i in $(seq 0 $((AGENTS - 1))); do
    for c in /sys/fs/cgroup/*/; do rmdir "$c/zennet-bp$$-$i.zygote" "$c/zennet-bp$$-$i" 2>/dev/null || true; done
  done
  [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

"$BIN/xencoind" --dev --rpc-addr 127.0.0.1:0 --data-dir "$work/chain" >"$work/chain.out" 2>"$work/chain.err" &
chain_pid=$!
for _ in $(seq 100); do grep -q http:// "$work/chain.out" 2>/dev/null && break; sleep 0.1; done
rpc="http://$(grep -o 'http://[^ ]*' "$work/chain.out" | head -1 | sed 's|http://||')"
mapfile -t keys < <("$BIN/xencoind" dev-keys | awk 'NR > 1 { print $2 }')
(umask 077; echo "${keys[1]}" >"$work/publisher.key")
for i in $(seq 0 $((AGENTS - 1))); do
  mkdir -p "$work/agent$i" "$work/bases$i"
  ln -s "$DEBIAN_BASE" "$work/bases$i/debian"
  (umask 077; echo "${keys[$((i + 2))]}" >"$work/agent$i/identity.key")
  "$BIN/zennet-agent" run --state-dir "$work/agent$i" --no-network --max-memory-mib 640 \
    --bases-dir "$work/bases$i" \
    --cgroup-parent "zennet-bp$$-$i" --rpc "$rpc" >"$work/agent$i.out" 2>"$work/agent$i.err" &
  agent_pids+=($!)
done
for i in $(seq 0 $((AGENTS - 1))); do
  for _ in $(seq 200); do grep -q "zennet-agent ready" "$work/agent$i.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "market=on" "$work/agent$i.out" || { echo "bench-publisher: agent $i did not start" >&2; cat "$work/agent$i.err" >&2; exit 1; }
done
mkdir -p "$work/home/.ssh"
ssh-keygen -q -t ed25519 -N '' -f "$work/home/.ssh/id_ed25519"
z() { HOME="$work/home" "$BIN/zennet" --wallet "$work/publisher.key" --rpc "$rpc" --state-dir "$work/pub" "$@"; }

ready_s() { # n -> seconds from the command's start until ssh answers on every host
  local n=$1 a b
  a=$(date +%s%N)
  z -n "$n" -m 64M --cpus 0.2 --disk 8M --timeout 60 >"$work/rent.out" 2>"$work/rent.err" || { echo "bench-publisher: -n $n failed" >&2; cat "$work/rent.err" >&2; exit 1; }
  local pids=()
  for i in $(seq 1 "$n"); do
    ssh -F "$work/pub/ssh_config" -o BatchMode=yes "zn-$i" true & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { echo "bench-publisher: ssh failed" >&2; exit 1; }; done
  b=$(date +%s%N)
  awk -v ns=$((b - a)) 'BEGIN { printf "%.2f", ns / 1e9 }'
}
for n in 1 10 50; do
  echo "publisher ready_s n=$n $(ready_s $n)"
  z stop >/dev/null
  for _ in $(seq 100); do [ -S "$work/pub/zennet.sock" ] || break; sleep 0.1; done
done

z -n 4 -m 64M --cpus 0.5 --disk 8M --image debian >/dev/null 2>"$work/rent.err" || { echo "bench-publisher: -n 4 --image debian failed" >&2; cat "$work/rent.err" >&2; exit 1; }
a=$(date +%s%N)
seq 200 | parallel --will-cite --sshloginfile "$work/pub/hosts.parallel" 'echo {}' >"$work/parallel.out"
b=$(date +%s%N)
[ "$(wc -l <"$work/parallel.out")" -eq 200 ] || { echo "bench-publisher: parallel returned $(wc -l <"$work/parallel.out") of 200 outputs" >&2; exit 1; }
echo "publisher parallel_jobs_per_s n=4 $(awk -v ns=$((b - a)) 'BEGIN { printf "%.1f", 200 / (ns / 1e9) }')"

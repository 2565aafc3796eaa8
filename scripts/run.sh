#!/usr/bin/env bash
# `make run`: the main job on its embedded default, as far as it is built today:
#  1. the devnet chain (`xencoind --dev`, one delegate, 1 s slots) on 127.0.0.1:8645,
#     read back through the publisher's wallet;
#  2. the provider's container engine on this host: a container from the busybox base,
#     a command inside it, its metered usage, its removal;
#  3. zennet-os booted under QEMU (TCG here) until its agent reports ready.
# The publisher hiring from the booted appliance arrives with the market issue.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
work=$(mktemp -d)
chmod 755 "$work" # containers' unprivileged root must traverse it
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== 1. devnet chain: xencoind --dev (log: $work/xencoind.log)"
"$BIN/xencoind" --dev --data-dir "$work/chain" --rpc-addr 127.0.0.1:8645 >"$work/xencoind.log" 2>&1 &
pids+=($!)
dev0=$("$BIN/xencoind" dev-keys 2>/dev/null | awk 'NR==1 {print $3}')
for _ in $(seq 60); do
  if out=$("$BIN/zennet" wallet balance "$dev0" 2>/dev/null); then break; fi
  sleep 0.5
done
echo "dev key 0 $dev0: ${out:-no answer from the devnet}"

echo "== 2. container engine on this host"
"$BIN/zennet-agent" demo --state-dir "$work/agent"

echo "== 3. zennet-os under QEMU until the agent is ready (serial log: $work/qemu.log)"
start=$(date +%s)
qemu/run --snapshot --fwd none </dev/null >"$work/qemu.log" 2>&1 &
pids+=($!)
for _ in $(seq 240); do
  if grep -q "zennet-agent ready" "$work/qemu.log"; then
    grep -E "zennet-os: boot ok|zennet-agent ready" "$work/qemu.log" | tr -d '\r'
    echo "appliance ready in $(( $(date +%s) - start )) s"
    exit 0
  fi
  sleep 0.5
done
echo "the appliance did not report ready within 120 s; last lines:" >&2
tail -20 "$work/qemu.log" >&2
exit 1

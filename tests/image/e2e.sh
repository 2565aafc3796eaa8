#!/usr/bin/env bash
# The appliance end to end (issue 8): a devnet on this host, zennet-os booted under QEMU
# selling on it, and a publisher here hiring from it with plain OpenSSH:
#  1. `xencoind --dev` on 127.0.0.1 (the guest reaches it at 10.0.2.2, QEMU user networking);
#  2. a scratch copy of out/zennet-os.img (grown by 1 GiB: the data partition grows at first
#     boot) whose zennet.toml says `[agent] extra_args = "--rpc http://10.0.2.2:PORT"`,
#     booted under QEMU (no port forwards: the provider dials out to the publisher);
#  3. the agent's address from its ready line, funded from a dev key (its ChannelClose fee);
#  4. `zennet -n 1 -m 128M --external-addr /ip4/10.0.2.2/tcp/0`: the announced address is
#     the one the guest reaches this host's libp2p listener at;
#  5. `ssh -F <state>/ssh_config zn-1` runs a command in the container; the container's
#     /sys/fs/cgroup/memory.max is 134217728 (cgroup v2 in the appliance); 8 s of cpu
#     burnt in an ssh session, so the provider earns more than its close fee;
#  6. `zennet stop`: the contract closed by its provider, the chain paid its last voucher,
#     and the provider's balance rose, by exactly that voucher less its close fee.
# Fails at the first step that does not hold; every wait is bounded; QEMU, xencoind, the
# publisher's daemon and the temp dir are removed on exit, failure or interrupt.
# Prints each phase's time. `--demo` (make run) prints the ssh output and the console path
# as it goes; the flow and the checks are the same.
# Usage: tests/image/e2e.sh [--demo] [--keep]   (--keep: leave the temp dir for inspection)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$top/target/release}
IMAGE=${IMAGE:-$top/out/zennet-os.img}
BOOT_TIMEOUT=${ZENNET_BOOT_TIMEOUT:-180}
FEE=1000 # the agent's default --fee on its ChannelClose
MEM_BYTES=134217728
demo=0 keep=0
for a in "$@"; do
  case $a in
    --demo) demo=1 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--demo] [--keep]" >&2; exit 2 ;;
  esac
done
for b in xencoind zennet; do
  [ -x "$BIN/$b" ] || { echo "e2e: no $BIN/$b (make build)" >&2; exit 1; }
done
[ -f "$IMAGE" ] || { echo "e2e: no image at $IMAGE (make image)" >&2; exit 1; }
for t in qemu-system-x86_64 ssh mcopy jq; do
  command -v "$t" >/dev/null || { echo "e2e: $t is missing (make deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/zennet-e2e.XXXXXX)
chain_pid='' pub=$work/pub
say() { echo "e2e: $*"; }
fail() {
  echo "e2e: FAIL: $*" >&2
  echo "e2e: last console lines (--keep keeps $work):" >&2
  tail -n 25 "$work/console.log" 2>/dev/null | tr -d '\r' | sed 's/^/  | /' >&2
  [ -f "$pub/daemon.log" ] && { echo "e2e: publisher daemon log:" >&2; tail -n 15 "$pub/daemon.log" | sed 's/^/  | /' >&2; }
  exit 1
}
# Kills a process by pid if it is still the program named (pids are not reused blindly).
kill_pid() { # PID COMM
  [ -n "$1" ] && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] && kill -9 "$1" 2>/dev/null || true
}
# The publisher's daemon: the `zennet daemon` process serving this run's state dir.
daemon_pids() {
  local p
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -q -- " daemon .*--state-dir $pub\( \|$\)" && echo "${p#/proc/}"
  done
  return 0
}
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in $(daemon_pids); do kill_pid "$p" zennet; done
  kill_pid "$(cat "$work/qemu.pid" 2>/dev/null)" qemu-system-x86
  kill_pid "$chain_pid" xencoind
  wait 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "e2e: kept $work"; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t0=$SECONDS phase_t=$SECONDS
phase() { # NAME: the time since the previous phase
  say "phase $1: $((SECONDS - phase_t)) s"
  phase_t=$SECONDS
}
# Waits (at most SECONDS) until FILE has a line matching REGEX; prints the first such line.
wait_line() { # FILE REGEX SECONDS
  local end=$((SECONDS + $3))
  while [ "$SECONDS" -lt "$end" ]; do
    if grep -a -m1 -E "$2" "$1" 2>/dev/null | tr -d '\r'; then return 0; fi
    sleep 0.5
  done
  return 1
}
zennet() { # the publisher's command against this run's devnet, wallet and state dir
  HOME=$work/home "$BIN/zennet" --rpc "$rpc" --wallet "$work/publisher.key" --state-dir "$pub" "$@"
}
balance() { # ADDRESS -> base units on chain
  zennet --json wallet balance "$1" | jq -er .balance
}
dev_key() { # INDEX -> the secret of that devnet key
  "$BIN/xencoind" dev-keys 2>/dev/null | awk -v i="$1" '$1 == i { print $2 }'
}

# ---- 1. the devnet
"$BIN/xencoind" --dev --data-dir "$work/chain" --rpc-addr 127.0.0.1:0 >"$work/xencoind.log" 2>&1 &
chain_pid=$!
url=$(wait_line "$work/xencoind.log" 'http://127\.0\.0\.1:[0-9]+' 30) || fail "xencoind did not print its RPC address"
rpc=http://${url##*http://}
port=${rpc##*:}
mkdir -p "$work/home" "$pub"
( umask 077; dev_key 1 > "$work/publisher.key"; dev_key 2 > "$work/funder.key" )
[ -s "$work/publisher.key" ] && [ -s "$work/funder.key" ] || fail "xencoind dev-keys gave no keys"
zennet --json wallet balance | jq -e '.balance > 0' >/dev/null || fail "the devnet does not answer at $rpc"
say "devnet at $rpc (the guest: http://10.0.2.2:$port)"
phase devnet

# ---- 2. the appliance, from a scratch copy whose zennet.toml points the agent at the devnet
cp --sparse=always "$IMAGE" "$work/disk.img"
truncate -s +1G "$work/disk.img"
fat="$work/disk.img@@1M" # the zennet-boot partition starts at 1 MiB (image/build.sh)
MTOOLS_SKIP_CHECK=1 mcopy -n -i "$fat" ::/zennet.toml "$work/zennet.toml" || fail "no zennet.toml on the image's boot partition"
sed -i "s|^extra_args = .*|extra_args = \"--rpc http://10.0.2.2:$port\"|" "$work/zennet.toml"
grep -q "^extra_args = \"--rpc http://10.0.2.2:$port\"" "$work/zennet.toml" || fail "zennet.toml has no [agent] extra_args line"
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$fat" "$work/zennet.toml" ::/zennet.toml
"$top/qemu/run" --image "$work/disk.img" --bios --nic virtio --fwd none --pidfile "$work/qemu.pid" \
  </dev/null >"$work/console.log" 2>&1 &
[ "$demo" = 1 ] && say "zennet-os booting under QEMU (console: $work/console.log)"
ready=$(wait_line "$work/console.log" '^zennet-agent ready' "$BOOT_TIMEOUT") ||
  fail "the appliance's agent was not ready within $BOOT_TIMEOUT s"
case $ready in *market=on*) ;; *) fail "the agent does not sell on the market: $ready" ;; esac
provider=${ready##*address=}
provider=${provider%% *}
say "appliance ready: $ready"
phase boot

# ---- 3. the provider's key pays its ChannelClose fee: fund its address from a dev key
HOME=$work/home "$BIN/zennet" --rpc "$rpc" --wallet "$work/funder.key" wallet send "$provider" 1 >/dev/null ||
  fail "funding the provider $provider"
before=$(balance "$provider") || fail "no balance for $provider"
say "provider $provider funded: $before base units"
phase fund

# ---- 4. the publisher hires one 128 MiB container from the appliance
timeout 180 env HOME="$work/home" "$BIN/zennet" --rpc "$rpc" --wallet "$work/publisher.key" --state-dir "$pub" \
  --json -n 1 -m 128M --external-addr /ip4/10.0.2.2/tcp/0 --timeout 150 >"$work/rent.json" 2>"$work/rent.err" ||
  fail "zennet -n 1 -m 128M: $(tail -n 5 "$work/rent.err")"
line=$(jq -c 'select(.event == "ready")' "$work/rent.json" | head -n1)
[ -n "$line" ] || fail "no ready line from zennet: $(cat "$work/rent.json")"
hired=$(jq -r .provider <<<"$line")
[ "$hired" = "$provider" ] || fail "hired from $hired, not the appliance's agent $provider"
[ "$(jq -r .memory_mib <<<"$line")" = 128 ] || fail "the ready line does not say 128 MiB: $line"
cfg=$(jq -r .ssh_config <<<"$line")
say "hired: zn-1 on 127.0.0.1:$(jq -r .port <<<"$line") from $hired (channel $(jq -r .channel <<<"$line"))"
phase hire

# ---- 5. plain ssh into the container in the guest
sshc() { HOME=$work/home timeout 90 ssh -F "$cfg" -o BatchMode=yes -o ConnectTimeout=30 zn-1 "$@"; }
out=$(sshc 'echo e2e-$((6 * 7)); uname -sr; id -u') || fail "ssh zn-1 failed (rc $?)"
[ "$demo" = 1 ] && printf '%s\n' "$out" | sed 's/^/  zn-1$ /'
[ "$(sed -n 1p <<<"$out")" = e2e-42 ] || fail "ssh output: $out"
[ "$(sed -n 3p <<<"$out")" = 0 ] || fail "not root in the container: $out"
mem=$(sshc 'cat /sys/fs/cgroup/memory.max') || fail "ssh cat memory.max failed"
[ "$mem" = "$MEM_BYTES" ] || fail "the container's memory.max is $mem, not $MEM_BYTES"
say "ssh zn-1: $(sed -n 1p <<<"$out") on $(sed -n 2p <<<"$out"), memory.max $mem"
phase ssh

# Work for the provider: 8 s of cpu in an ssh session (charged to the container's cgroup;
# 250 base units per cpu second at the uncalibrated rates) earns more than the close fee.
burnt=$(sshc 'timeout 8 sh -c "while :; do :; done" 2>/dev/null; echo burnt') || fail "ssh cpu load failed"
[ "$burnt" = burnt ] || fail "ssh cpu load: $burnt"
sleep 3 # the next metering intervals (2 s) report that cpu and are paid
phase load

# ---- 6. stop: the provider closes at its last voucher; the chain pays it
zennet --json bill >"$work/bill.json" 2>/dev/null && [ "$demo" = 1 ] &&
  say "bill: $(jq -c '.[] | {host, paid}' "$work/bill.json")"
timeout 150 env HOME="$work/home" "$BIN/zennet" --rpc "$rpc" --wallet "$work/publisher.key" --state-dir "$pub" \
  --json stop >"$work/stop.json" 2>"$work/stop.err" || fail "zennet stop: $(tail -n 5 "$work/stop.err")"
c=$(jq -c '.contracts[0]' "$work/stop.json") || fail "zennet stop printed no contract: $(cat "$work/stop.json")"
[ "$(jq '.contracts | length' "$work/stop.json")" = 1 ] || fail "expected one contract: $(cat "$work/stop.json")"
[ "$(jq -r .settled_by <<<"$c")" = closed ] || fail "not closed by the provider: $c"
voucher=$(jq -er .voucher <<<"$c") paid=$(jq -er .paid_on_chain <<<"$c")
[ "$voucher" -gt 0 ] || fail "the last voucher is $voucher"
[ "$paid" = "$voucher" ] || fail "the chain paid $paid, the last voucher was $voucher"
after=$(balance "$provider")
[ "$after" -eq $((before + voucher - FEE)) ] ||
  fail "provider balance $before -> $after: rose by $((after - before)), expected voucher $voucher - fee $FEE"
[ "$after" -gt "$before" ] || fail "the provider's balance did not rise: $before -> $after (voucher $voucher)"
say "stopped: channel closed at voucher $voucher; provider balance $before -> $after (+$((after - before)) = voucher - fee $FEE)"
phase stop
say "PASS in $((SECONDS - t0)) s"

#!/bin/bash
# make bench-market: a one-node devnet (1 s slots) and five provider agents
# on loopback; `zennet rent` hires n = 1 (five runs, median), 10 and 50
# containers (64 MiB, 0.2 cpu), and the agents' CPU (agent and engine processes) is sampled
# over 20 s while the 50 contracts are metered every 2 s. One line per figure:
#   market hire_ms_p50 n=1 <ms>
#   market hire_ms n=10 <ms>
#   market hire_ms n=50 <ms>
#   market agent_cpu_pct_per_contract=<pct of one core>
# Needs root (the agents run real containers). Cleans up every process,
# cgroup and file it makes.
set -euo pipefail
BIN=${BIN:-target/release}
AGENTS=5
work=$(mktemp -d /tmp/zennet-bench-market.XXXXXX)
chmod 755 "$work"
agent_pids=()
chain_pid=
cleanup() {
  for p in "${agent_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${agent_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$chain_pid" ] && { kill "$chain_pid" 2>/dev/null || true; wait "$chain_pid" 2>/dev/null || true; }
  for i in $(seq 0 $((AGENTS - 1))); do
    for c in /sys/fs/cgroup/*/; do
      rmdir "$c/zennet-bm$$-$i.zygote" "$c/zennet-bm$$-$i" 2>/dev/null || true
    done
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
  mkdir -p "$work/agent$i"
  (umask 077; echo "${keys[$((i + 2))]}" >"$work/agent$i/identity.key")
  "$BIN/zennet-agent" run --state-dir "$work/agent$i" --no-network --max-memory-mib $((10 * ${MEM_MIB:-64})) \
    --cgroup-parent "zennet-bm$$-$i" --rpc "$rpc" >"$work/agent$i.out" 2>"$work/agent$i.err" &
  agent_pids+=($!)
done
for i in $(seq 0 $((AGENTS - 1))); do
  for _ in $(seq 200); do grep -q "zennet-agent ready" "$work/agent$i.out" 2>/dev/null && break; sleep 0.05; done
  grep -q "market=on" "$work/agent$i.out" || { echo "bench-market: agent $i did not start" >&2; cat "$work/agent$i.err" >&2; exit 1; }
done

rent() { # n duration -> hire_ms on stdout
  "$BIN/zennet" rent --foreground --wallet "$work/publisher.key" --rpc "$rpc" --json -n "$1" -m ${MEM_MIB:-64}M --cpus 0.2 --disk 8M \
    --duration "$2" --timeout 60 >"$work/rent.out" 2>"$work/rent.err" || { echo "bench-market: rent -n $1 failed" >&2; cat "$work/rent.err" >&2; exit 1; }
  grep -o '"hire_ms":[0-9]*' "$work/rent.out" | head -1 | cut -d: -f2
}

runs=()
for _ in 1 2 3 4 5; do runs+=("$(rent 1 1)"); done
echo "market hire_ms_p50 n=1 $(printf '%s\n' "${runs[@]}" | sort -n | sed -n 3p)"
echo "market hire_ms n=10 $(rent 10 1)"

# n=50, metered for a while: CPU of every agent process (agent + engine).
cpu_ticks() {
  local t=0
  for p in "${agent_pids[@]}"; do
    for q in $p $(pgrep -P "$p" || true); do
      t=$((t + $(awk '{ print $14 + $15 }' "/proc/$q/stat" 2>/dev/null || echo 0)))
    done
  done
  echo $t
}
"$BIN/zennet" rent --foreground --wallet "$work/publisher.key" --rpc "$rpc" --json -n 50 -m ${MEM_MIB:-64}M --cpus 0.2 --disk 8M \
  --duration 40 --timeout 60 >"$work/rent50.out" 2>"$work/rent50.err" &
rent_pid=$!
for _ in $(seq 600); do grep -q '"hire_ms"' "$work/rent50.out" 2>/dev/null && break; sleep 0.1; done
hire50=$(grep -o '"hire_ms":[0-9]*' "$work/rent50.out" | head -1 | cut -d: -f2)
ready=$(grep -c '"event":"ready"' "$work/rent50.out" || true)
echo "market hire_ms n=50 ${hire50:-none}"
sleep 5
c1=$(cpu_ticks); t1=$(date +%s%N)
if [ -n "${PERF:-}" ]; then # PERF=<file>: profile the agents over the window
  all=$(for p in "${agent_pids[@]}"; do echo "$p"; pgrep -P "$p" || true; done | paste -sd,)
  perf record -q -F 499 -g -o "$PERF" -p "$all" -- sleep 20 2>/dev/null &
fi
sleep 20
c2=$(cpu_ticks); t2=$(date +%s%N)
hz=$(getconf CLK_TCK)
awk -v c=$((c2 - c1)) -v hz="$hz" -v ns=$((t2 - t1)) -v n="$ready" \
  'BEGIN { printf "market agent_cpu_pct_per_contract=%.4f\n", (c / hz) / (ns / 1e9) / n * 100 }'
wait "$rent_pid" || { echo "bench-market: rent -n 50 failed" >&2; cat "$work/rent50.err" >&2; exit 1; }

#!/usr/bin/env bash
# `make run`: the main job on its embedded default.
#  1. the provider's container engine on this host: a container from the busybox base,
#     a command inside it, its metered usage, its removal;
#  2. the market end to end, the flow of `make test-e2e` (tests/image/e2e.sh --demo):
#     the devnet chain (`xencoind --dev`) on this host; zennet-os booted under QEMU (TCG
#     here) with its agent selling on that chain; a publisher here running
#     `zennet -n 1 -m 128M`; plain `ssh` into the container in the guest runs a command
#     and reads its memory limit; `zennet stop`; the provider's balance change on chain.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release
work=$(mktemp -d)
chmod 755 "$work" # containers' unprivileged root must traverse it
trap 'rm -rf "$work"' EXIT

echo "== 1. container engine on this host"
"$BIN/zennet-agent" demo --state-dir "$work/agent"

echo "== 2. a publisher here hires from zennet-os booted under QEMU, on the devnet chain"
tests/image/e2e.sh --demo

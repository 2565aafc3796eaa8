#!/usr/bin/env bash
# Checks every option of zennet.fragment against a kernel config (Debian's by default):
# each must be built in (=y) or a module (=m), so the offline image cannot silently lack one.
# Usage: kernel-config/check.sh [KERNEL_CONFIG]   (default: out/cache/kernel/boot/config-*)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/zennet.fragment
config=${1:-}
if [ -z "$config" ]; then
  found=("$here"/../out/cache/kernel/boot/config-*)
  [ -f "${found[0]}" ] && config=${found[0]}
fi
if [ -z "$config" ] || [ ! -f "$config" ]; then
  echo "kernel-config: no kernel config given and none extracted (run 'make image-kernel')" >&2
  exit 2
fi
pass=0 fail=0
while IFS= read -r line; do
  case $line in ''|'#'*) continue ;; esac
  opt=${line%%=*}
  if grep -Eq "^${opt}=(y|m)$" "$config"; then
    pass=$((pass + 1))
  else
    echo "kernel-config: MISSING $opt in $(basename "$config")" >&2
    fail=$((fail + 1))
  fi
done < "$fragment"
echo "kernel-config: checked against $config"
echo "kernel-config: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

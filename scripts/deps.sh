#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are missing.
# Idempotent and quiet: prints nothing when everything is present.
# A name may carry a suite (`qemu-system-x86/bookworm`); the check uses the bare name.
set -euo pipefail
missing=()
for spec in "$@"; do
  name=${spec%%/*}
  if ! dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$spec")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages: ${missing[*]} (run as root or install them)" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends --allow-downgrades "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# `make run`: the main job on its embedded default. Grows as the parts land.
set -euo pipefail
cd "$(dirname "$0")/.."
exec target/release/zennet-agent demo

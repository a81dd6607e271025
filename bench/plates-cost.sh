#!/bin/bash
# Plate reading's cost in a whole node (issue #20): the same cameras and scenes twice,
# plate reading off, then on. 80% idle mix; --plate-share of the simulated cameras show
# vehicles carrying plates (varta plate-scene), the rest the usual clip.
# Usage: bench/plates-cost.sh [BINARY] [CAMERAS] [PLATE_SHARE]; needs DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-./target/release/varta}"; cams="${2:-20}"; share="${3:-0.45}"
source scripts/lib.sh; varta_env
for mode in --no-plate-reading ""; do
  echo "=== --plate-share $share $mode"
  "$bin" bench run --cameras "$cams" --warmup 12 --duration 40 --no-floors --plate-share "$share" $mode
done

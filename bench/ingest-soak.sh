#!/usr/bin/env bash
# Soak: CAMERAS simulated cameras with random faults for SECONDS (default 600).
#
#   bench/ingest-soak.sh CAMERAS [SECONDS]
#
# `varta sim --random-faults 10` injects a fault on average every 10 s into a random
# camera (drop, stall, refuse, garbage, freeze, dark) or, one time in twenty, restarts
# the whole server; it stops injecting 60 s before the end, so every camera can be
# seen to have recovered. `varta ingest-bench --decode adaptive` pulls them all and
# prints a progress line a minute (streaming cameras, restarts, RSS, threads), then a
# JSON summary. Pass: every camera streaming at the end, RSS growth from the first
# minute under 5%, thread count flat.
# Needs ./scripts/setup and `cargo build --release -p varta` (not part of CI).
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=$1; SECS=${2:-600}
PORT=${PORT:-18556}
BIN=./target/release/varta
OUT=.varta/bench; mkdir -p "$OUT"
$BIN sim --cameras "$N" --listen 127.0.0.1:$PORT --scene mixed --random-faults 10 \
  --random-faults-for $((SECS - 60)) > "$OUT/soak-sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; wait $SIM 2>/dev/null' EXIT
sleep 3
$BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode adaptive \
  --warmup 60 --duration $((SECS - 60)) --report-every 60 2>&1 | grep -v "^\s*$" | grep -E "^t=|^\{"
echo "faults injected: $(grep -c 'injecting fault' "$OUT/soak-sim.log"), server restarts: $(grep -c 'restarting the server' "$OUT/soak-sim.log")"

#!/usr/bin/env bash
# Many cameras on one machine with the adaptive policy, for SECONDS (default 600).
#
#   bench/ingest-scale.sh CAMERAS [SECONDS]      e.g. bench/ingest-scale.sh 145
#
# `varta sim --scene mixed` (80% idle, 20% active per camera) serves CAMERAS streams;
# `varta ingest-bench --decode adaptive` pulls them all, printing a line a minute
# (cameras streaming, restarts, RSS, threads) and a JSON summary; the simulator's own
# CPU is printed apart (on a real site the cameras do that work).
# Needs ./scripts/setup and `cargo build --release -p varta` (not part of CI).
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=$1; SECS=${2:-600}
PORT=${PORT:-18557}
BIN=./target/release/varta
OUT=.varta/bench; mkdir -p "$OUT"
$BIN sim --cameras "$N" --listen 127.0.0.1:$PORT --scene mixed > "$OUT/scale-sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; wait $SIM 2>/dev/null' EXIT
sleep 3
s0=$(awk '{print $14+$15}' /proc/$SIM/stat); t0=$(date +%s.%N)
$BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode adaptive \
  --warmup 60 --duration $((SECS - 60)) --report-every 60 2>&1 | grep -v "^\s*$" | grep -E "^t=|^\{"
s1=$(awk '{print $14+$15}' /proc/$SIM/stat); t1=$(date +%s.%N)
python3 -c "print(f'simulator CPU over the run: {($s1-$s0)/100/($t1-$t0)*100:.0f}% of one core')"

#!/usr/bin/env bash
# Where an idle camera's ingest CPU goes (issue #16): receiving alone against
# receiving plus the idle keyframe decodes, with a perf profile of receiving.
#
#   bench/ingest-idle.sh CAMERAS [SECONDS]
#
# One `varta sim --scene idle` serves CAMERAS still scenes (the clip's background with
# sensor noise, a keyframe every 2 s). `varta ingest-bench --decode adaptive` pulls
# them three ways, alternated twice (A B C A B C): the config's idle keyframe decode
# (every 4 s), every 8 s, and none (1e6 s: receiving, depayloading and parsing only).
# Prints CPU seconds per camera-minute for each. With PERF=1 it then records 15 s of
# the receive-only case with `perf` (Debian's linux-perf) and prints the split by
# library and by thread into .varta/bench/perf-idle.txt.
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=$1; SECS=${2:-20}; WARM=8
PORT=${PORT:-18556}
BIN=./target/release/varta
OUT=.varta/bench; mkdir -p "$OUT"
$BIN sim --cameras "$N" --listen 127.0.0.1:$PORT --scene idle > "$OUT/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; wait $SIM 2>/dev/null' EXIT
sleep 3
run() { # idle keyframe seconds
  $BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode adaptive \
    --idle-keyframe-secs "$1" --warmup $WARM --duration "$SECS" --report-every 1000 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(f\"{d['cpu_seconds_per_camera_minute']:.3f} {d['decoded_fps']/$N:.3f}\")"
}
a1=$(run 4); b1=$(run 8); c1=$(run 1000000); a2=$(run 4); b2=$(run 8); c2=$(run 1000000)
python3 - <<PY
rows = [("keyframe every 4 s (default)", "$a1", "$a2"), ("keyframe every 8 s", "$b1", "$b2"), ("receive only", "$c1", "$c2")]
print(f"cameras={$N} window={$SECS}s, idle scenes; CPU s per camera-minute (decoded pictures/s per camera)")
for name, x, y in rows:
    (cx, dx), (cy, dy) = x.split(), y.split()
    print(f"  {name:30} {cx} {cy}  mean {(float(cx)+float(cy))/2:.3f}  ({(float(dx)+float(dy))/2:.2f}/s)")
PY
if [ "${PERF:-0}" = 1 ]; then
  $BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode adaptive \
    --idle-keyframe-secs 1000000 --warmup 5 --duration 25 --report-every 1000 > /dev/null 2>&1 &
  IB=$!
  sleep 8
  perf record -F 1999 -g -p $IB -o "$OUT/perf-idle.data" -- sleep 15 > /dev/null 2>&1
  wait $IB || true
  { perf report -i "$OUT/perf-idle.data" --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -20
    echo; perf report -i "$OUT/perf-idle.data" --children --sort sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
  } > "$OUT/perf-idle.txt"
  echo "profile: $OUT/perf-idle.txt"
fi

#!/usr/bin/env bash
# Ingest CPU against the decoding floor, measured in one run on the same simulator.
#
#   bench/ingest-cpu.sh CAMERAS [SECONDS]
#
# One `varta sim` (10 fps, 768x576 clip) serves CAMERAS streams. Then, one after the
# other, twice each (A B A B, so drift on this shared machine shows):
#   floor: CAMERAS gst-launch-1.0 processes, each
#          rtspsrc ! rtph264depay ! h264parse ! avdec_h264 max-threads=1 ! fakesink
#   varta: `varta ingest-bench --decode full` (the same, plus the decode gate, the
#          sampler at 2 fps, scaling and RGB conversion of the sampled frames)
# Prints CPU seconds per camera-minute for each, and the ratio varta / floor.
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=$1; SECS=${2:-30}; WARM=10
PORT=${PORT:-18554}
BIN=./target/release/varta
OUT=.varta/bench; mkdir -p "$OUT"
$BIN sim --cameras "$N" --listen 127.0.0.1:$PORT > "$OUT/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; wait $SIM 2>/dev/null' EXIT
sleep 3

floor() {
  # One process per stream: a single gst-launch with many live RTSP chains does not
  # reach PLAYING reliably (32 chains sat at 8% CPU), and one process per camera is
  # the plain way a site would run them.
  local pids=()
  for i in $(seq 1 "$N"); do
    gst-launch-1.0 -q rtspsrc location=rtsp://127.0.0.1:$PORT/cam/$i protocols=tcp latency=200 \
      ! rtph264depay ! h264parse ! avdec_h264 max-threads=1 ! fakesink sync=false > /dev/null 2>&1 &
    pids+=($!)
  done
  sleep $WARM
  cpu() { local s=0; for p in "${pids[@]}"; do s=$((s + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $s; }
  local c0; c0=$(cpu); local t0; t0=$(date +%s.%N)
  sleep "$SECS"
  local c1; c1=$(cpu); local t1; t1=$(date +%s.%N)
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  python3 -c "c=($c1-$c0)/100; t=$t1-$t0; print(f'{c/t*60/$N:.3f}')"
}

varta() {
  $BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode full \
    --warmup $WARM --duration "$SECS" --report-every 1000 2>/dev/null \
    | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['cpu_seconds_per_camera_minute']:.3f}\")"
}

f1=$(floor); v1=$(varta); f2=$(floor); v2=$(varta)
python3 - <<PY
f=[$f1,$f2]; v=[$v1,$v2]
fm=sum(f)/2; vm=sum(v)/2
print(f"cameras={$N} window={$SECS}s  CPU s per camera-minute")
print(f"  gst-launch floor: {f[0]:.3f} {f[1]:.3f}  mean {fm:.3f}")
print(f"  varta ingest:     {v[0]:.3f} {v[1]:.3f}  mean {vm:.3f}")
print(f"  ratio varta/floor: {vm/fm:.3f}  (target <= 1.15)")
PY

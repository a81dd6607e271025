#!/usr/bin/env bash
# Adaptive decoding against full decoding on a mixed scene, and how fast activity is
# noticed.
#
#   bench/ingest-adaptive.sh CAMERAS [SECONDS]
#
# One `varta sim --scene mixed` (each camera idle 80% of every 50 s, the clip 20%,
# each with its own phase; every switch logged) serves CAMERAS streams. Then
# `varta ingest-bench` runs with `--decode full`, then `--decode adaptive` (logging
# every switch to full decoding). Prints CPU per camera-minute of both, the ratio,
# and for every activity onset in the adaptive window the lag until full decoding
# started, against one GOP (2 s for the clip).
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=$1; SECS=${2:-100}; WARM=10
PORT=${PORT:-18555}
BIN=./target/release/varta
OUT=.varta/bench; mkdir -p "$OUT"
rm -f "$OUT/scenes.jsonl" "$OUT/switches.jsonl"
$BIN sim --cameras "$N" --listen 127.0.0.1:$PORT --scene mixed --scene-period 50 --active-share 0.2 \
  --scene-log "$OUT/scenes.jsonl" > "$OUT/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; wait $SIM 2>/dev/null' EXIT
sleep 3
run() { # policy [extra args]
  local p=$1; shift
  $BIN ingest-bench --url-prefix "rtsp://127.0.0.1:$PORT/cam/" --cameras "$N" --decode "$p" \
    --warmup $WARM --duration "$SECS" --report-every 1000 "$@" 2>/dev/null
}
run full > "$OUT/full.json"
start_ms=$(( $(date +%s%3N) + WARM * 1000 ))
run adaptive --switch-log "$OUT/switches.jsonl" > "$OUT/adaptive.json"
end_ms=$(date +%s%3N)
python3 - "$OUT" "$start_ms" "$end_ms" <<PY
import json, sys
out, start, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
full = json.load(open(f"{out}/full.json")); ad = json.load(open(f"{out}/adaptive.json"))
print(f"cameras={$N} window={$SECS}s each; mixed scene: 20% active")
for name, r in (("full", full), ("adaptive", ad)):
    print(f"  {name:9} CPU {r['cpu_seconds_per_camera_minute']:.3f} s/camera-minute ({r['cpu_percent']:.0f}% total), "
          f"decoded {r['decoded_fps']:.0f}/s of {r['received_fps']:.0f}/s received, restarts {r['restarts']}, "
          f"streaming at end {r['streaming_at_end']}/{r['cameras']}, degraded {len(r['degraded_at_end'])}")
print(f"  full / adaptive CPU: {full['cpu_seconds_per_camera_minute'] / ad['cpu_seconds_per_camera_minute']:.2f}x  (target >= 4)")
onsets = [json.loads(l) for l in open(f"{out}/scenes.jsonl")]
onsets = [o for o in onsets if o["scene"] == "active" and start + 2000 <= o["at_ms"] <= end - 3000]
switches = {}
for l in open(f"{out}/switches.jsonl"):
    s = json.loads(l); switches.setdefault(s["camera"], []).append(s["at_ms"])
lags = []
for o in onsets:
    after = [t for t in switches.get(o["camera"], []) if t >= o["at_ms"] - 500]
    lags.append(min(after) - o["at_ms"] if after else None)
ok = [l for l in lags if l is not None and l <= 2000]
found = sorted(l for l in lags if l is not None)
if onsets:
    p = lambda q: found[min(len(found) - 1, int(q * len(found)))] if found else None
    print(f"  onsets {len(onsets)}: full decoding within one GOP (2 s) for {len(ok)} ({100*len(ok)/len(onsets):.1f}%, target >= 95%); "
          f"lag median {p(0.5)} ms, p95 {p(0.95)} ms, max {found[-1] if found else None} ms, missed {lags.count(None)}")
PY

#!/usr/bin/env bash
# Event latency and activity coverage with CAMERAS simulated cameras on the mixed
# scene (each camera idle 80% of every 50 s, the vtest clip 20%, own phase).
#   bench/detect-latency.sh [CAMERAS] [SECONDS]
# Runs a local PostgreSQL (port 54340), `varta sim --scene mixed --scene-log`, and
# `varta serve` (adaptive decoding, 2 fps analysis, person events). Prints, over the
# window after a warm-up:
# - latency from the object's first analysed frame (`started_at`, its capture time) to
#   the event's commit (`written_at`), p50/p95/p99. It includes the tracker's
#   confirmation wait (track_min_hits = 2 frames, 0.5 s apart at 2 fps);
# - the share of activity onsets (scene switches to the clip) followed by a person
#   event on that camera within the active period.
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-32}; SECS=${2:-300}; WARM=30
export ORT_DYLIB_PATH=$PWD/.cache/onnxruntime/lib/libonnxruntime.so.1.32.0
source bench/lib.sh
OUT=.varta/bench/latency; mkdir -p "$OUT"; rm -rf "$OUT"/*
SIM_PORT=18556; API_PORT=18081
DB=$(bench_database varta_latency)
{
  printf '[node]\nname = "bench"\napi_listen = "127.0.0.1:%s"\n\n' $API_PORT
  printf '[detect]\nsnapshot_dir = "%s/snapshots"\n\n' "$OUT"
  printf '[store]\nspool_dir = "%s/spool"\n\n' "$OUT"
  printf '[[sites]]\nid = "s"\nname = "S"\n'
  for i in $(seq 1 "$N"); do
    printf '\n[[cameras]]\nid = "cam-%s"\nsite = "s"\nurl = "rtsp://127.0.0.1:%s/cam/%s"\nclasses = ["person"]\n' "$i" $SIM_PORT "$i"
  done
} > "$OUT/config.toml"
$BIN sim --cameras "$N" --listen 127.0.0.1:$SIM_PORT --scene mixed --scene-period 50 --active-share 0.2 \
  --scene-log "$OUT/scenes.jsonl" > "$OUT/sim.log" 2>&1 &
SIM=$!
sleep 3
DATABASE_URL=$DB $BIN serve --config "$OUT/config.toml" > "$OUT/serve.log" 2>&1 &
SERVE=$!
trap 'kill $SIM $SERVE 2>/dev/null; wait 2>/dev/null; bench_stop_database' EXIT
sleep $WARM
start_ms=$(date +%s%3N)
sleep "$SECS"
end_ms=$(date +%s%3N)
sleep 5
curl -s localhost:$API_PORT/api/v1/cameras > "$OUT/cameras.json"
psql "$DB" -AtF, -c "SELECT camera_id, (extract(epoch FROM started_at)*1000)::bigint,
  (extract(epoch FROM written_at - started_at)*1000)::bigint FROM events
  WHERE class = 'person' AND started_at >= to_timestamp($start_ms/1000.0)
    AND started_at < to_timestamp($end_ms/1000.0)" > "$OUT/events.csv"
python3 - "$OUT" "$start_ms" "$end_ms" "$N" <<'PY'
import json, sys
out, start, end, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ev = [l.split(",") for l in open(f"{out}/events.csv") if l.strip()]
lat = sorted(int(e[2]) for e in ev)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
mins = (end - start) / 60000
print(f"cameras={n} window={(end-start)/1000:.0f}s: {len(ev)} person events ({len(ev)/mins/n:.2f} per camera-minute)")
print(f"  first frame -> committed: p50 {q(0.5)} ms, p95 {q(0.95)} ms, p99 {q(0.99)} ms, max {lat[-1] if lat else None} ms")
scenes = [json.loads(l) for l in open(f"{out}/scenes.jsonl")]
onsets = [s for s in scenes if s["scene"] == "active" and start <= s["at_ms"] <= end - 10000]
by_cam = {}
for e in ev:
    by_cam.setdefault(e[0], []).append(int(e[1]))
hit = 0
for o in onsets:
    cam = f"cam-{o['camera']}"
    # The active period lasts 10 s (20% of 50 s).
    if any(o["at_ms"] <= t <= o["at_ms"] + 10000 for t in by_cam.get(cam, [])):
        hit += 1
if onsets:
    print(f"  activity onsets {len(onsets)}: followed by a person event within the active period: {hit} ({100*hit/len(onsets):.1f}%)")
cams = json.load(open(f"{out}/cameras.json"))
a = [c["analysis"] for c in cams]
tot = lambda k: sum(x[k] for x in a)
waits = [x["mean_queue_wait_ms"] for x in a if x["mean_queue_wait_ms"] is not None]
print(f"  scheduler: offered {tot('frames_offered')}, analysed {tot('frames_analysed')}, stale {tot('dropped_stale')}, "
      f"queue full {tot('dropped_queue_full')}, mean wait {sum(waits)/max(1,len(waits)):.0f} ms; "
      f"streaming {sum(c['status']=='streaming' for c in cams)}/{len(cams)}")
PY

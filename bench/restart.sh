#!/usr/bin/env bash
# Time from SIGKILL of `varta serve` and its immediate restart to its first new
# event in PostgreSQL, ROUNDS times, for each binary given (alternated, one run).
#   bench/restart.sh [ROUNDS] [BINARY…]        (default: ./target/release/varta)
# 4 simulated cameras (active scene), one node, lease TTL 15 s (the default), on the
# benchmark cluster (port 54340, .varta/pg-bench), a database per binary. "First new
# event" is the first row whose track started after the restart (its `started_at`):
# the node must take its cameras back, connect, decode and confirm a track, and the
# record must reach PostgreSQL. Needs ./scripts/setup and release builds.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS=${1:-3}; shift || true
BINS=("$@"); [ ${#BINS[@]} -gt 0 ] || BINS=(./target/release/varta)
source bench/lib.sh
source scripts/lib.sh; varta_env
OUT=.varta/bench/restart; rm -rf "$OUT"; mkdir -p "$OUT"
SIM_PORT=18654
$BIN sim --cameras 4 --scene active --listen 127.0.0.1:$SIM_PORT --clip "$VARTA_MEDIA_DIR/vtest.mp4" > "$OUT/sim.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null; pkill -9 -f "$OUT/node-" 2>/dev/null; bench_stop_database' EXIT
config() { # index
  printf '[node]\nname = "restart-%s"\napi_listen = "127.0.0.1:%s"\n[detect]\nmodels = "%s/models/models.toml"\nsnapshot_dir = "%s/snap-%s"\n[store]\nspool_dir = "%s/spool-%s"\n[[sites]]\nid = "site-a"\nname = "A"\n' \
    "$1" $((18680 + $1)) "$PWD" "$PWD/$OUT" "$1" "$PWD/$OUT" "$1"
  for c in 1 2 3 4; do
    printf '[[cameras]]\nid = "cam-%s"\nsite = "site-a"\nurl = "rtsp://127.0.0.1:%s/cam/%s"\nclasses = ["person"]\n' "$c" "$SIM_PORT" "$c"
  done
}
# Milliseconds until an event that started after $2 (ISO time) is in database $1.
wait_event() {
  local t0; t0=$(date +%s%N)
  for _ in $(seq 1 600); do
    [ "$(psql "$1" -Atc "SELECT count(*) FROM events WHERE started_at > '$2'" 2>/dev/null || echo 0)" -gt 0 ] && break
    sleep 0.05
  done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
declare -A PIDS DBS RESULTS
for i in "${!BINS[@]}"; do
  DBS[$i]=$(bench_database "varta_restart_$i")
  config "$i" > "$OUT/node-$i.toml"
  DATABASE_URL=${DBS[$i]} "${BINS[$i]}" serve --config "$OUT/node-$i.toml" > "$OUT/node-$i-0.log" 2>&1 &
  PIDS[$i]=$!
  wait_event "${DBS[$i]}" "1970-01-01" > /dev/null
done
for r in $(seq 1 "$ROUNDS"); do
  for i in "${!BINS[@]}"; do
    sleep 3
    kill -9 "${PIDS[$i]}"; wait "${PIDS[$i]}" 2>/dev/null || true
    now=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
    DATABASE_URL=${DBS[$i]} "${BINS[$i]}" serve --config "$OUT/node-$i.toml" > "$OUT/node-$i-$r.log" 2>&1 &
    PIDS[$i]=$!
    ms=$(wait_event "${DBS[$i]}" "$now")
    echo "${BINS[$i]} round $r: first new event $ms ms after SIGKILL + restart"
    RESULTS[$i]="${RESULTS[$i]:-} $ms"
  done
done
for i in "${!BINS[@]}"; do
  kill -9 "${PIDS[$i]}" 2>/dev/null || true
  echo "${BINS[$i]}: ms to first event after restart:${RESULTS[$i]}"
done

#!/bin/bash
# Event clips' cost in a whole node (issue #22): the same cameras and scenes twice,
# [clips] off, then on (the ring on every camera, the remux of every event's clip).
# Prints both reports, then the clips the "on" run recorded: count, mean size and
# length, bytes per second of clip. 80% idle mix (the bench's default).
# Usage: bench/clips-cost.sh [BINARY] [CAMERAS]; needs DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-./target/release/varta}"; cams="${2:-8}"
source scripts/lib.sh; varta_env
off="$(mktemp --suffix=.toml)"
trap 'rm -f "$off"' EXIT
{ cat config/demo.toml; printf '\n[clips]\nenabled = false\n'; } > "$off"
for cfg in "$off" config/demo.toml; do
  echo "=== $( [ "$cfg" = "$off" ] && echo 'clips off' || echo 'clips on' )"
  "$bin" bench run --cameras "$cams" --warmup 12 --duration 45 --no-floors --config "$cfg"
done
echo "=== clips of the 'on' run"
psql -X -A -F ' ' "$DATABASE_URL" -c "
  SELECT count(*) AS clips, round(avg(clip_bytes) / 1e6, 2) AS mean_mb, round(avg(clip_secs)::numeric, 1) AS mean_secs,
         round((sum(clip_bytes) / nullif(sum(clip_secs), 0) * 8 / 1000)::numeric) AS kbit_per_clip_second
    FROM events WHERE node = (SELECT node FROM events WHERE node LIKE 'bench-%' ORDER BY started_at DESC LIMIT 1)
     AND clip IS NOT NULL"

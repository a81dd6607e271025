#!/usr/bin/env bash
# Spool replay rate after an outage of EVENTS events.
#   bench/store-replay.sh [EVENTS] [BATCH]
# 1. `varta store-load` with an unreachable database: every event is synced to the
#    event log (the outage). Prints the rate and the log's size on disk.
# 2. `varta store-load --events 0` with the database up: reads the log back into
#    PostgreSQL. Prints the replay rate and checks that every event is in the table
#    once.
# PostgreSQL on this machine (port 54340, .varta/pg-bench).
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-1000000}; BATCH=${2:-5000}
source bench/lib.sh
OUT=.varta/bench/store; mkdir -p "$OUT"; rm -rf "$OUT"/spool-replay
DB=$(bench_database varta_replaybench)
trap bench_stop_database EXIT
$BIN store-load --events 0 --database-url "$DB" --spool "$OUT/spool-replay" > /dev/null
DOWN="postgres://varta@127.0.0.1:1/nowhere"
J=$($BIN store-load --events "$N" --batch "$BATCH" --no-drain --database-url "$DOWN" --spool "$OUT/spool-replay" 2>/dev/null)
echo "outage: $N events made durable at $(echo "$J" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p') events/s; \
event log $(du -sh "$OUT/spool-replay" | cut -f1)"
J=$($BIN store-load --events 0 --database-url "$DB" --spool "$OUT/spool-replay")
echo "replay: $(echo "$J" | sed -n 's/.*"replayed_events_at_end":\([0-9]*\).*/\1/p') events in \
$(echo "$J" | sed -n 's/.*"replay_secs":\([0-9.]*\).*/\1/p') s = \
$(echo "$J" | sed -n 's/.*"replay_events_per_sec":\([0-9.]*\).*/\1/p') events/s"
psql "$DB" -Atc "SELECT 'stored: ' || count(*) || ' rows, ' || count(DISTINCT id) || ' distinct ids' FROM events"

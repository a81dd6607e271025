#!/usr/bin/env bash
# Sustained insert rate of the store writer against `psql \copy` of the same rows
# into the same table, in one run, alternated ROUNDS times.
#   bench/store-writer.sh [EVENTS] [BATCH] [ROUNDS]
#   BEFORE=/path/to/older/varta bench/store-writer.sh …   also that binary's writer
# The writer is `varta store-load` (the real path: journal, event log on disk with
# its fdatasync per group, PostgreSQL writer with binary COPY in one transaction per
# batch of BATCH events). Its rate counts until every event is committed. The same
# rows are written to CSV and loaded with psql's \copy after a TRUNCATE. All go
# through PostgreSQL on this machine (port 54340, .varta/pg-bench), into the
# partitioned `events` table with its indexes. With BEFORE (a binary built from an
# older commit, e.g. in a git worktree), each round also runs that writer, into a
# database of its own (an older binary refuses a newer schema), and the ratio
# after/before is printed: the cost of a change, measured in one run.
# Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-500000}; BATCH=${2:-5000}; ROUNDS=${3:-5}
source bench/lib.sh
OUT=.varta/bench/store; mkdir -p "$OUT"; rm -rf "$OUT"/spool "$OUT"/rows.csv
DB=$(bench_database varta_storebench)
trap bench_stop_database EXIT
$BIN store-load --events 0 --database-url "$DB" --spool "$OUT/spool" > /dev/null
if [ -n "${BEFORE:-}" ]; then
  DBB=$(bench_database varta_storebench_before)
  rm -rf "$OUT/spool-before"
  "$BEFORE" store-load --events 0 --database-url "$DBB" --spool "$OUT/spool-before" > /dev/null 2>&1
fi
COLS="id, camera_id, track_id, class, score, bbox, started_at, last_seen_at, ended_at, frames, node, rule, zone, snapshot"
echo "events=$N batch=$BATCH rounds=$ROUNDS"
RATIOS=""; WS=""; BS=""; BR=""
for r in $(seq 1 "$ROUNDS"); do
  if [ -n "${BEFORE:-}" ]; then
    psql "$DBB" -qc "TRUNCATE events" -qc "CHECKPOINT"
    JB=$("$BEFORE" store-load --events "$N" --batch "$BATCH" --database-url "$DBB" --spool "$OUT/spool-before" 2>/dev/null)
    B=$(echo "$JB" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p')
    CB=$(psql "$DBB" -Atc "SELECT count(*) FROM events")
    printf 'round %d: before %.0f events/s (%d rows)\n' "$r" "$B" "$CB"
    BS="$BS $B"
  fi
  psql "$DB" -qc "TRUNCATE events" -qc "CHECKPOINT"
  J=$($BIN store-load --events "$N" --batch "$BATCH" --database-url "$DB" --spool "$OUT/spool" --csv "$OUT/rows.csv")
  W=$(echo "$J" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p')
  C=$(psql "$DB" -Atc "SELECT count(*) FROM events")
  psql "$DB" -qc "TRUNCATE events" -qc "CHECKPOINT"
  t0=$(date +%s%N)
  psql "$DB" -qc "\\copy events ($COLS) FROM '$OUT/rows.csv' WITH (FORMAT csv)"
  t1=$(date +%s%N)
  P=$(awk -v n="$N" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", n / (ns / 1e9) }')
  C2=$(psql "$DB" -Atc "SELECT count(*) FROM events")
  awk -v r="$r" -v w="$W" -v p="$P" -v c="$C" -v c2="$C2" \
    'BEGIN { printf "round %d: writer %.0f events/s (%d rows), psql \\copy %.0f events/s (%d rows), ratio %.2f\n", r, w, c, p, c2, w / p }'
  RATIOS="$RATIOS $(awk -v w="$W" -v p="$P" 'BEGIN { print w / p }')"; WS="$WS $W"
  if [ -n "${BEFORE:-}" ]; then BR="$BR $(awk -v w="$W" -v b="$B" 'BEGIN { print w / b }')"; fi
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'median: writer %.0f events/s, ratio to psql \\copy %.2f (targets: >= 50000, >= 0.8)\n' \
  "$(echo "$WS" | med)" "$(echo "$RATIOS" | med)"
if [ -n "${BEFORE:-}" ]; then
  printf 'median: before %.0f events/s; after/before %.2f (target >= 0.9)\n' "$(echo "$BS" | med)" "$(echo "$BR" | med)"
fi

#!/usr/bin/env bash
# What the JetStream feed's outbox triggers (migration 0015, issue #23) cost the store
# writer: the same `varta store-load --updates --unsigned` (every event started, then
# ended one batch later: the COPY, the upsert and both statement triggers), in three
# modes alternated ROUNDS times in one run, into the same tables after a TRUNCATE:
#   none  the feed's triggers disabled (the writer as before migration 0015)
#   off   triggers on, no publisher registered (a region without [feed])
#   on    a publisher registered: every start and end written to feed_outbox
#         (nobody drains it during the run)
#   bench/feed-outbox.sh [EVENTS] [BATCH] [ROUNDS] [BINARY]
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-100000}; BATCH=${2:-5000}; ROUNDS=${3:-3}
source bench/lib.sh
BIN=${4:-$BIN}
OUT=.varta/bench/feed; mkdir -p "$OUT"; rm -rf "$OUT"/spool
DB=$(bench_database varta_feedbench)
trap bench_stop_database EXIT
$BIN store-load --events 0 --database-url "$DB" --spool "$OUT/spool" > /dev/null
TRIGGERS="events_feed_inserted events_feed_updated"
echo "events=$N batch=$BATCH rounds=$ROUNDS (each started, then ended; unsigned)"
declare -A ALL
for r in $(seq 1 "$ROUNDS"); do
  for mode in none off on; do
    psql "$DB" -qc "TRUNCATE events, feed_outbox, feed_publishers" >/dev/null
    for t in $TRIGGERS; do
      if [ "$mode" = none ]; then act=DISABLE; else act=ENABLE; fi
      psql "$DB" -qc "ALTER TABLE events $act TRIGGER $t"
    done
    [ "$mode" = on ] && psql "$DB" -qc "INSERT INTO feed_publishers (node) VALUES ('bench')"
    psql "$DB" -qc "CHECKPOINT"
    J=$($BIN store-load --events "$N" --batch "$BATCH" --updates --unsigned --database-url "$DB" --spool "$OUT/spool" 2>>"$OUT/store-load.log")
    W=$(echo "$J" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p')
    O=$(psql "$DB" -Atc "SELECT count(*) FROM feed_outbox")
    printf 'round %d: %-5s %.0f events/s (outbox rows: %s)\n' "$r" "$mode" "$W" "$O"
    ALL[$mode]="${ALL[$mode]:-} $W"
  done
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
n=$(echo "${ALL[none]}" | med); f=$(echo "${ALL[off]}" | med); o=$(echo "${ALL[on]}" | med)
printf 'median: none %.0f, off %.0f, on %.0f events/s; off/none %.2f, on/none %.2f\n' "$n" "$f" "$o" \
  "$(awk -v a="$f" -v b="$n" 'BEGIN { print a / b }')" "$(awk -v a="$o" -v b="$n" 'BEGIN { print a / b }')"

#!/usr/bin/env bash
# What signing each ended event's manifest costs the store writer (issue #22): the
# same `varta store-load --updates` (every event started, then ended one batch later:
# the upsert path, and with signing one SELECT + one UPDATE of the manifests per
# batch, an Ed25519 signature per event) with and without `--unsigned`, alternated
# ROUNDS times in one run, into the same table after a TRUNCATE.
#   bench/evidence-sign.sh [EVENTS] [BATCH] [ROUNDS] [BINARY]
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
N=${1:-100000}; BATCH=${2:-5000}; ROUNDS=${3:-3}
source bench/lib.sh
BIN=${4:-$BIN}
OUT=.varta/bench/evidence; mkdir -p "$OUT"; rm -rf "$OUT"/spool
DB=$(bench_database varta_signbench)
trap bench_stop_database EXIT
$BIN store-load --events 0 --database-url "$DB" --spool "$OUT/spool" > /dev/null
echo "events=$N batch=$BATCH rounds=$ROUNDS (each started, then ended)"
S=""; U=""; R=""
for r in $(seq 1 "$ROUNDS"); do
  for mode in unsigned signed; do
    psql "$DB" -qc "TRUNCATE events" -qc "CHECKPOINT"
    flag=""; [ "$mode" = unsigned ] && flag="--unsigned"
    J=$($BIN store-load --events "$N" --batch "$BATCH" --updates $flag --database-url "$DB" --spool "$OUT/spool")
    W=$(echo "$J" | sed -n 's/.*"events_per_sec":\([0-9.]*\).*/\1/p')
    M=$(psql "$DB" -Atc "SELECT count(*) FILTER (WHERE manifest IS NOT NULL) || ' of ' || count(*) FROM events")
    printf 'round %d: %-8s %.0f events/s (signed manifests: %s)\n' "$r" "$mode" "$W" "$M"
    if [ "$mode" = signed ]; then S="$S $W"; else U="$U $W"; fi
  done
  R="$R $(awk -v s="$(echo "$S" | awk '{print $NF}')" -v u="$(echo "$U" | awk '{print $NF}')" 'BEGIN { print s / u }')"
done
med() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf 'median: unsigned %.0f events/s, signed %.0f events/s, signed/unsigned %.2f\n' \
  "$(echo "$U" | med)" "$(echo "$S" | med)" "$(echo "$R" | med)"

#!/usr/bin/env bash
# `varta bench run` of two binaries alternated in one run, for the cost of a change
# on the whole node: capture → event committed and → alert on the client, CPU.
#   bench/bench-run-before-after.sh BEFORE_BINARY [AFTER_BINARY] [CAMERAS] [ROUNDS]
# Each binary gets a database of its own on the benchmark cluster (an older binary
# refuses a newer schema); reports go to .varta/bench/before-after/.
# Needs ./scripts/setup and release builds of both commits (e.g. a git worktree).
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BEFORE=$1; AFTER=${2:-./target/release/varta}; N=${3:-8}; ROUNDS=${4:-2}
source bench/lib.sh
source scripts/lib.sh; varta_env
OUT=.varta/bench/before-after; mkdir -p "$OUT"
DBB=$(bench_database varta_run_before); DBA=$(bench_database varta_run_after)
trap bench_stop_database EXIT
for r in $(seq 1 "$ROUNDS"); do
  for which in before after; do
    if [ $which = before ]; then B=$BEFORE; D=$DBB; else B=$AFTER; D=$DBA; fi
    DATABASE_URL=$D "$B" bench run --cameras "$N" --json "$OUT/$which-$r.json" > "$OUT/$which-$r.txt" 2>&1
    python3 - "$OUT/$which-$r.json" "$which" "$r" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
res = r.get("results", r)
l = res["latency"]
c, a = l["capture_to_commit"], l["capture_to_alert_client"]
cpu = res.get("cpu", {})
print(f"{sys.argv[2]} round {sys.argv[3]}: capture→commit p50 {c['p50_ms']:.0f} p95 {c['p95_ms']:.0f} ms (n={c['n']}), "
      f"→alert p50 {a['p50_ms']:.0f} p95 {a['p95_ms']:.0f} ms, CPU {cpu.get('total_pct', float('nan')):.0f}%")
PY
  done
done

#!/usr/bin/env bash
# GET /api/v1/cameras and GET /api/v1/events under wrk (Debian) at about RATE
# requests/s each, for SECS seconds, against `varta api` on a database holding
# EVENTS events (made by `varta store-load`); prints wrk's latency percentiles.
# wrk has no fixed-rate mode, so each of CONNS connections waits CONNS/RATE s
# between requests (a Lua delay()), which paces the total to about RATE/s.
#   bench/api-http.sh [RATE] [SECS] [EVENTS]
# Target (issue #7): p99 < 50 ms at 200 requests/s.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RATE=${1:-200}; SECS=${2:-30}; EVENTS=${3:-200000}; CONNS=8
source bench/api-setup.sh varta_httpbench
$BIN store-load --events "$EVENTS" --cameras 2 --database-url "$DB" --spool "$WORK/spool" >/dev/null
psql -q "$DB" -c "ANALYZE" >/dev/null
DELAY_MS=$(( CONNS * 1000 / RATE ))
cat > "$WORK/wrk.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $TOKEN"
function delay() return $DELAY_MS end
LUA
for path in /api/v1/cameras "/api/v1/events?limit=100" "/api/v1/events?camera=load-1&class=person&limit=50"; do
  echo "== GET $path at ~$RATE req/s for ${SECS}s ($CONNS connections, ${DELAY_MS} ms apart each)"
  wrk -t 2 -c "$CONNS" -d "${SECS}s" --latency -s "$WORK/wrk.lua" "$API$path" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done
grep -c "internal error" "$WORK/api.log" | sed 's/^/internal errors in the API log: /'

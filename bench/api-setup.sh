# Sourced by the API benchmarks: a fresh database on the benchmark cluster with one
# site and two cameras, an operator token in $TOKEN, and `varta api` listening at
# $API (stopped on exit). $1 names the database.
source scripts/lib.sh
source bench/lib.sh
DB=$(bench_database "$1")
WORK=.varta/bench/api; rm -rf "$WORK"; mkdir -p "$WORK"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
API="http://127.0.0.1:$PORT"
api_fixture "$DB" "$PORT" bench-api "$WORK" 2 "$BIN"
# Diagnosis only: BENCH_SYNC_COMMIT=off shows how much of the tail is WAL flushes
# (each audited search commits one audit row). Varta itself never turns it off.
if [ "${BENCH_SYNC_COMMIT:-on}" = off ]; then
  psql -q "$DB" -c "ALTER DATABASE ${DB##*/} SET synchronous_commit = off" >/dev/null
fi
DATABASE_URL="$DB" VARTA_PASSWORD="bench-password-1" $BIN user add bench-op --role operator --replace >/dev/null
TOKEN=$(DATABASE_URL="$DB" $BIN user token bench-op)
export VARTA_TOKEN="$TOKEN"
DATABASE_URL="$DB" VARTA_LOG=warn $BIN api --config "$WORK/api.toml" > "$WORK/api.log" 2>&1 &
API_PID=$!
trap 'kill $API_PID 2>/dev/null; wait $API_PID 2>/dev/null; bench_stop_database' EXIT
for _ in $(seq 100); do curl -sf "$API/readyz" >/dev/null && break; sleep 0.2; done

#!/usr/bin/env bash
# SSE alert latency: from an alerting event's COMMIT to each of CLIENTS SSE clients
# of a `varta api` process (LISTEN/NOTIFY → fan-out), ALERTS alerts 50 ms apart.
#   bench/api-alerts.sh [CLIENTS] [ALERTS]
# Target (issue #7): p99 < 1 s with 50 clients. Needs `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CLIENTS=${1:-50}; ALERTS=${2:-200}
source bench/api-setup.sh varta_alertbench
DATABASE_URL="$DB" $BIN alert-bench --api "$API" --camera cam-1 --clients "$CLIENTS" --alerts "$ALERTS"

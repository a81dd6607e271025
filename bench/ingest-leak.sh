#!/usr/bin/env bash
# The add/remove leak test of crates/ingest/tests/leak.rs with CYCLES cycles (default
# 100; CI runs 20): threads and RSS before and after, every 10 cycles in between.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/lib.sh
varta_env
VARTA_LEAK_CYCLES=${1:-100} cargo test -q -p varta-ingest --test leak -- --nocapture 2>&1 | grep -E "cycles|test result"

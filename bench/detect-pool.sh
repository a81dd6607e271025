#!/usr/bin/env bash
# Inference pool throughput (scheduler, preprocessing, inference, decoding, tracker,
# rules, snapshots) against a raw ONNX Runtime loop (`Session::run` on a ready tensor)
# with the same model and thread count, alternated twice in one run.
#   bench/detect-pool.sh [THREADS] [CAMERAS] [SECONDS]
# Target: pool >= 0.9 x raw. Needs ./scripts/setup and `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ORT_DYLIB_PATH=$PWD/.cache/onnxruntime/lib/libonnxruntime.so.1.32.0
./target/release/varta detect-bench pool --workers "${1:-2}" --cameras "${2:-8}" --seconds "${3:-20}" 2>/dev/null

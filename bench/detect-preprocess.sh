#!/usr/bin/env bash
# Preprocessing (scale + YUV→RGB + normalise + layout) of one frame, 768x576 (vtest)
# and 1080p, against the model's own inference time on the same frames, one run.
#   bench/detect-preprocess.sh [SECONDS]
# Target: preprocessing under 10% of inference. Needs ./scripts/setup and
# `cargo build --release -p varta`.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export ORT_DYLIB_PATH=$PWD/.cache/onnxruntime/lib/libonnxruntime.so.1.32.0
./target/release/varta detect-bench preprocess --seconds "${1:-20}" 2>/dev/null

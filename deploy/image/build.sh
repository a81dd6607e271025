#!/usr/bin/env bash
# Builds Varta's OCI image from Debian packages alone (issue #23): no base image is
# pulled (none can be, here or in many regional networks).
#
#   deploy/image/build.sh                # localhost/varta:<version>, .varta/image/varta-<version>.oci.tar
#   WITH_LIBAV=1 deploy/image/build.sh   # …:<version>-libav, with GPL FFmpeg (see 2.)
#
# 1. `cargo build --release -p varta`.
# 2. A Debian 12 root filesystem by mmdebstrap (variant minbase) with the run-time
#    packages only: GStreamer's base, good and bad plugins, the RTSP server library
#    gst-inspect-1.0 (gstreamer1.0-tools, for diagnostics) and ca-certificates. Not
#    gstreamer1.0-libav: Debian builds FFmpeg with --enable-gpl, and what we ship has
#    no GPL code. So the default image decodes H.265 with libde265 (LGPL-3.0, all of
#    Main profile) and H.264 with OpenH264 (BSD-2-Clause), which decodes only the
#    Constrained Baseline profile; Main/High H.264 needs NVDEC (the GPU image) or
#    VA-API hardware, or WITH_LIBAV=1.
#    WITH_LIBAV=1: a region's own build for its own use adds Debian's
#    gstreamer1.0-libav (FFmpeg, GPL-2+ as Debian builds it) for every H.264 profile
#    on the CPU. Such an image contains GPL code: fine to run, not for Varta to
#    publish; it is labelled (org.varta.gpl-codecs=true, PACKAGES.txt).
# 3. The GPL plugins and libraries that plugins-bad pulls in as dependencies are
#    removed (x264/x265 encoders and the like; see GPL_FILES), and the image's package
#    list with each package's licence summary is written to
#    /usr/share/doc/varta/PACKAGES.txt; the build fails if a package on GPL_DENY is
#    still there.
# 4. Varta's files: /usr/local/bin/varta, /usr/share/varta/models (with the OCR models
#    setup fetched), /usr/lib/varta/libonnxruntime.so.<ORT_VERSION>; user 10001
#    (`varta`), /var/lib/varta owned by it. Read-only root friendly: everything the
#    process writes is under /var/lib/varta (a volume) and /tmp.
# 5. `podman import` with USER, ENTRYPOINT, ENV and WORKDIR, and `podman save` as an
#    OCI archive.
# Then deploy/image/test.sh checks the image's tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/lib.sh
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
OUT=.varta/image
ROOTFS=$OUT/rootfs
PACKAGES=libgstrtspserver-1.0-0,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,gstreamer1.0-plugins-bad,gstreamer1.0-tools,ca-certificates
WITH_LIBAV=${WITH_LIBAV:-0}
SUFFIX=""
[ "$WITH_LIBAV" = 1 ] && PACKAGES="$PACKAGES,gstreamer1.0-libav" && SUFFIX=-libav
TAG=${TAG:-localhost/varta:$VERSION$SUFFIX}
# Packages that must not be in the image: GPL libraries (or GPL-built FFmpeg) that
# gstreamer1.0-plugins-bad depends on, and those a change of packages could bring.
# (libchromaprint1 is LGPL but needs the GPL-built libavcodec.)
GPL_DENY="libx264-164 libx265-199 libavcodec59 libavformat59 libavfilter8 libavutil57 libswresample4 libswscale6 libpostproc56 libchromaprint1 libmpeg2-4 liba52-0.7.4 libdca0 libdvdread8 libdvdnav4 libfaad2 libmjpegutils-2.1-0 libmpeg2encpp-2.1-0 libmplex2-2.1-0 libzvbi0"

command -v mmdebstrap >/dev/null || die "mmdebstrap missing: apt-get install mmdebstrap"
command -v podman >/dev/null || die "podman missing: apt-get install podman"
[ -f "$CACHE/onnxruntime/lib/libonnxruntime.so.$ORT_VERSION" ] || die "run ./scripts/setup first (libonnxruntime)"

t0=$(date +%s)
# VARTA_BIN: a binary built already (e.g. to try the image's mechanics quickly).
BIN=${VARTA_BIN:-target/release/varta}
if [ -z "${VARTA_BIN:-}" ]; then
  log "release build"
  cargo build --release --locked -p varta
fi

log "root filesystem (mmdebstrap, Debian 12, minbase + $PACKAGES)"
rm -rf "$OUT"; mkdir -p "$OUT"
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  bookworm "$ROOTFS" /etc/apt/sources.list.d/debian.sources

log "removing GPL plugins and checking the packages' licences"
# GStreamer plugins that link GPL libraries: removed with the libraries' packages.
rm -f "$ROOTFS"/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgst{x265,x264,mpeg2dec,a52dec,dtsdec,dvdread,mpeg2enc,mplex,faad,teletext,resindvd}.so
[ "$WITH_LIBAV" = 1 ] || rm -f "$ROOTFS"/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstchromaprint.so
present=""
# With WITH_LIBAV=1 the GPL-built FFmpeg libraries stay, knowingly.
[ "$WITH_LIBAV" = 1 ] && GPL_DENY=$(echo "$GPL_DENY" | tr ' ' '\n' | grep -v '^libav\|^libsw\|^libpostproc\|^libchromaprint' | paste -sd ' ' -)
for p in $GPL_DENY; do
  if chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    chroot "$ROOTFS" dpkg --purge --force-depends "$p" >/dev/null 2>&1
  fi
  chroot "$ROOTFS" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && present="$present $p"
done
[ -z "$present" ] || die "GPL packages still in the image:$present"
# And any library left that FFmpeg's configure marked as a GPL build.
if [ "$WITH_LIBAV" != 1 ]; then
  gpl_built=$(grep -rl --include='*.so*' -e '--enable-gpl' "$ROOTFS/usr/lib" || true)
  [ -z "$gpl_built" ] || die "libraries built with --enable-gpl in the image: $gpl_built"
fi
mkdir -p "$ROOTFS/usr/share/doc/varta"
chroot "$ROOTFS" dpkg-query -W -f='${Package} ${Version}\n' | while read -r pkg ver; do
  lic=$( (grep -h '^License:' "$ROOTFS/usr/share/doc/$pkg/copyright" 2>/dev/null || true) | sed 's/^License: *//' | sort -u | paste -sd ';' -)
  echo "$pkg $ver ${lic:-see /usr/share/doc/$pkg/copyright}"
done > "$ROOTFS/usr/share/doc/varta/PACKAGES.txt"

log "Varta's files"
install -D -m 0755 "$BIN" "$ROOTFS/usr/local/bin/varta"
# Line tables off (129 MB → 28 MB); symbols stay, so a panic's backtrace names functions.
strip --strip-debug "$ROOTFS/usr/local/bin/varta"
install -D -m 0644 "$CACHE/onnxruntime/lib/libonnxruntime.so.$ORT_VERSION" "$ROOTFS/usr/lib/varta/libonnxruntime.so.$ORT_VERSION"
mkdir -p "$ROOTFS/usr/share/varta"
cp -r models "$ROOTFS/usr/share/varta/models"
[ -d "$CACHE/models" ] && cp -r "$CACHE/models/." "$ROOTFS/usr/share/varta/models/"
cp models/PROVENANCE.md "$ROOTFS/usr/share/doc/varta/MODELS-PROVENANCE.md"
echo "varta:x:10001:10001:Varta:/var/lib/varta:/usr/sbin/nologin" >> "$ROOTFS/etc/passwd"
echo "varta:x:10001:" >> "$ROOTFS/etc/group"
install -d -m 0700 -o 10001 -g 10001 "$ROOTFS/var/lib/varta"
rm -rf "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/lib/apt/lists/*

log "OCI image $TAG"
tar -C "$ROOTFS" --numeric-owner -cf "$OUT/rootfs.tar" .
podman --storage-driver vfs rmi -f "$TAG" >/dev/null 2>&1 || true
podman --storage-driver vfs import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /var/lib/varta' \
  --change "ENV ORT_DYLIB_PATH=/usr/lib/varta/libonnxruntime.so.$ORT_VERSION" \
  --change 'ENV VARTA_LOG=info' \
  --change 'ENTRYPOINT ["/usr/local/bin/varta"]' \
  --change 'CMD ["--help"]' \
  --change 'EXPOSE 8080' \
  --change "LABEL org.varta.gpl-codecs=$([ "$WITH_LIBAV" = 1 ] && echo true || echo false)" \
  "$OUT/rootfs.tar" "$TAG" >/dev/null
podman --storage-driver vfs save --format oci-archive -o "$OUT/varta-$VERSION$SUFFIX.oci.tar" "$TAG"
rm -f "$OUT/rootfs.tar"
log "built $TAG in $(( $(date +%s) - t0 )) s: $(du -h "$OUT/varta-$VERSION$SUFFIX.oci.tar" | cut -f1) ($OUT/varta-$VERSION$SUFFIX.oci.tar)"

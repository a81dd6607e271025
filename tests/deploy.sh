#!/usr/bin/env bash
# Deployment files checked offline (issue #23), run by scripts/test:
# - every Kubernetes manifest in deploy/kubernetes against the Kubernetes 1.31
#   schemas (kubernetes-validate, PyPI, strict: unknown fields fail), and every
#   file a kustomization names exists;
# - the config inside each ConfigMap with `varta check-config` (keys, ranges, lines);
# - the systemd units with `systemd-analyze verify` (any warning fails).
# Needs ./scripts/setup (.cache/venv) and a built target/debug/varta.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
cd "$ROOT"
KV="$CACHE/venv/bin/kubernetes-validate"
[ -x "$KV" ] || die "kubernetes-validate missing: run ./scripts/setup"
BIN="$ROOT/target/debug/varta"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

manifests=$(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml | sort)
"$KV" -k 1.31.0 --strict --quiet $manifests > "$work/kv.log" 2>&1 || { cat "$work/kv.log"; die "a Kubernetes manifest does not validate"; }
grep -q . "$work/kv.log" && { cat "$work/kv.log"; die "kubernetes-validate warned"; }
log "Kubernetes manifests valid ($(echo "$manifests" | wc -l) files, Kubernetes 1.31, strict)"

# Each kustomization's resources exist, and the ConfigMaps' configs check.
"$CACHE/venv/bin/python" - "$work" <<'PY'
import os, sys, yaml, glob
work = sys.argv[1]
for k in sorted(glob.glob("deploy/kubernetes/**/kustomization.yaml", recursive=True)):
    d = os.path.dirname(k)
    for r in yaml.safe_load(open(k)).get("resources", []):
        if not os.path.exists(os.path.join(d, r)):
            sys.exit(f"{k}: resource {r} does not exist")
n = 0
for f in sorted(glob.glob("deploy/kubernetes/**/*.yaml", recursive=True)):
    for doc in yaml.safe_load_all(open(f)):
        if doc and doc.get("kind") == "ConfigMap" and "varta.toml" in doc.get("data", {}):
            n += 1
            out = os.path.join(work, f"{n}-{doc['metadata']['name']}.toml")
            # The image's models are the repository's here.
            open(out, "w").write(doc["data"]["varta.toml"].replace("/usr/share/varta/models", os.path.abspath("models")))

PY
for cfg in "$work"/*.toml; do
  VARTA_CREDENTIALS_SITE_01=user:pass VARTA_CREDENTIALS_PEER=any:0123456789abcdef0123 "$BIN" check-config "$cfg" > "$work/check.log" 2>&1 \
    || { cat "$work/check.log"; die "the config in a ConfigMap ($(basename "$cfg")) does not check"; }
done
log "ConfigMap configs check ($(ls "$work"/*.toml | wc -l))"

for unit in deploy/systemd/*.service; do
  # The binary as installed is this build here; the rest as written.
  sed "s|/usr/local/bin/varta|$BIN|g" "$unit" > "$work/$(basename "$unit")"
  out=$(systemd-analyze verify "$work/$(basename "$unit")" 2>&1) || { echo "$out"; die "$unit does not verify"; }
  [ -z "$out" ] || { echo "$out"; die "$unit: systemd-analyze warned"; }
done
log "systemd units verify ($(ls deploy/systemd/*.service | wc -l))"

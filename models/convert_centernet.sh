#!/usr/bin/env bash
# Rebuilds centernet_mbv3_coco_512.onnx from its sources (see PROVENANCE.md):
#   npm @vladmandic/human@3.3.6 (TF.js graph model) → TF SavedModel → ONNX opset 17.
# Not run in CI; needs npm, python3-venv and the npm and PyPI registries.
# Usage: models/convert_centernet.sh OUT_DIR
set -euo pipefail
out="${1:?usage: $0 OUT_DIR}"
mkdir -p "$out"; out="$(cd "$out" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cd "$work"

npm pack --silent @vladmandic/human@3.3.6 >/dev/null
tar -xzf vladmandic-human-3.3.6.tgz package/models/centernet.json package/models/centernet.bin

python3 -m venv venv
. venv/bin/activate
pip install -q "tensorflow-cpu==2.15.1" tfjs-graph-converter "tf2onnx==1.17.0" "onnx==1.16.2" "numpy<2"

tfjs_graph_converter --compat_mode tflite --output_format tf_saved_model \
  package/models/centernet.json saved_model

# tf2onnx 1.17 + onnx 1.16 cannot type the TF-internal `_input_shapes` attribute;
# it has no model semantics, so drop it before tf2onnx makes ONNX nodes from it.
python3 - <<'PY'
import tf2onnx.tf_utils as tu
orig = tu.tflist_to_onnx
def patched(g, shape_override, const_node_values=None, ignore_default=None, use_default=None):
    for node in g.get_operations():
        if "_input_shapes" in node.node_def.attr:
            del node.node_def.attr["_input_shapes"]
    return orig(g, shape_override, const_node_values, ignore_default, use_default)
tu.tflist_to_onnx = patched
import sys
from tf2onnx import convert
sys.argv = ["tf2onnx", "--saved-model", "saved_model", "--opset", "17", "--output", "model.onnx"]
convert.main()
PY
cp model.onnx "$out/centernet_mbv3_coco_512.onnx"
sha256sum "$out/centernet_mbv3_coco_512.onnx"
echo "Compare detections with models/PROVENANCE.md (bytes may differ from the committed file)."

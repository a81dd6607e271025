#!/usr/bin/env bash
# Rebuilds models/yolox_nano.onnx from its upstream file (see PROVENANCE.md):
#   models/make_yolox_nano.sh SOURCE.onnx [OUT.onnx]
# SOURCE.onnx is `model/yolox_nano.onnx` of github.com/Kazuhito00/YOLOX-ONNX-TFLite-Sample
# at commit 3d4f1119d0694200671c08069ecb847aa0d8495a (sha256
# 695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14), an ONNX export of
# Megvii's YOLOX-Nano COCO weights. The only change: the input's batch, height and
# width become dynamic (`batch`, `height`, `width`) and the three head reshapes keep
# the batch (`[0, 85, -1]` instead of `[1, 85, -1]`), so one file serves any input
# size divisible by 32 and batches of several cameras. The weights are untouched.
# Needs python3-venv and the PyPI package onnx (installed in a throw-away venv).
set -euo pipefail
SRC=${1:?usage: $0 SOURCE.onnx [OUT.onnx]}
OUT=${2:-$(dirname "$0")/yolox_nano.onnx}
echo "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14  $SRC" | sha256sum -c -
VENV=$(mktemp -d)
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q "onnx==1.17.0" "numpy<3"
"$VENV/bin/python" - "$SRC" "$OUT" <<'PY'
import sys
import numpy as np
import onnx
from onnx import numpy_helper

src, out = sys.argv[1], sys.argv[2]
m = onnx.load(src)
dims = m.graph.input[0].type.tensor_type.shape.dim
for d, name in zip(dims, ["batch", None, "height", "width"]):
    if name:
        d.ClearField("dim_value")
        d.dim_param = name
odims = m.graph.output[0].type.tensor_type.shape.dim
for d, name in zip(odims, ["batch", "anchors"]):
    d.ClearField("dim_value")
    d.dim_param = name
# The head's flatten of each level: [1, 85, -1] -> [0, 85, -1] (0 keeps the batch).
changed = 0
for i, init in enumerate(m.graph.initializer):
    v = numpy_helper.to_array(init)
    if v.dtype == np.int64 and v.tolist() == [1, 85, -1]:
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array([0, 85, -1], np.int64), init.name))
        changed += 1
assert changed == 3, f"expected the 3 head reshapes, found {changed}"
del m.graph.value_info[:]
onnx.checker.check_model(m)
onnx.save(m, out)
PY
sha256sum "$OUT"
